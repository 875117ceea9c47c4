import Testing
import TestSupport
import TensorCore
@testable import Models

@Suite("Model building blocks: positions, patches, windows, masks") struct StructureTests {
    @Test func sinCosPutsTheColumnFirst() {
        let t = SinCos.table2D(dim: 8, grid: 3, classToken: true)  // d = 2, ω = (1, 0.01)
        #expect(t.shape == [1, 10, 8])
        #expect(t.scalars[0..<8].allSatisfy { $0 == 0 })  // class row
        // Token (row 1, col 2) = raster 5, row 1 + 5 = 6 with the class row.
        let row = Array(t.scalars[(6 * 8)..<(7 * 8)])
        let expected: [Double] = [sin(2.0), sin(0.02), cos(2.0), cos(0.02), sin(1.0), sin(0.01), cos(1.0), cos(0.01)]
        #expect(zip(row, expected).allSatisfy { abs(Double($0) - $1) < 1e-6 })
    }

    @Test func patchifyOrderIsRowColumnChannel() {
        let img = Tensor((0..<(3 * 4 * 4)).map(Float.init), shape: [1, 3, 4, 4])
        let p = Patches.patchify(img, patch: 2)  // (1, 4, 12)
        #expect(p.shape == [1, 4, 12])
        // Patch 1 = grid (0, 1); element (py 1, px 0, c 2) = index (1·2 + 0)·3 + 2 = 8 → pixel (c 2, y 1, x 2).
        #expect(p.pointer[1 * 12 + 8] == img.pointer[(2 * 4 + 1) * 4 + 2])
        #expect(Patches.unpatchify(p, patch: 2, imageSize: 4).scalars == img.scalars)
    }

    /// Embedding the kept tokens alone gives each the convolution's product over its patch and
    /// the weight the gradient of those tokens, against float64 sums (batched index or not).
    @Test(arguments: [1, 2])
    func keptTokensEmbedAlone(batch: Int) throws {
        let (B, C, S, p, D) = (2, 3, 16, 4, 6), g = S / p, K = C * p * p
        var rng = RandomGenerator(seed: UInt64(7 + batch))
        let embed = PatchEmbed(patch: p, dim: D, xavier: false, rng: &rng)
        let images = Tensor((0..<(B * C * S * S)).map { _ in rng.uniform() * 2 - 1 }, shape: [B, C, S, S])
        // Batched: 5 tokens of each sample; otherwise 7 rows of the whole batch, one twice.
        let rows: [Int] = batch == 1 ? [3, 17, 0, 31, 17, 22, 9] : [15, 2, 7, 0, 11]
        let tokens = RowIndex(rows, sourceRows: batch == 1 ? B * g * g : g * g)
        let out = embed(images, tokens: tokens, batch: batch == 1 ? 1 : B)
        let n = out.shape[0]
        #expect(out.shape == [batch == 1 ? rows.count : B * rows.count, D])
        let weights = (0..<n * D).map { _ in rng.uniform() * 2 - 1 }
        (out * Tensor(weights, shape: [n, D])).sum().backward()
        // Token row o → (sample, grid position), and its patch as K values in (c, py, px) order.
        func patch(_ o: Int) -> [Double] {
            let r = batch == 1 ? rows[o] : (o / rows.count) * g * g + rows[o % rows.count]
            let (b, t) = (r / (g * g), r % (g * g))
            return (0..<K).map { k in
                let (c, py, px) = (k / (p * p), k / p % p, k % p)
                return Double(images.pointer[((b * C + c) * S + (t / g) * p + py) * S + (t % g) * p + px])
            }
        }
        let u = Double(Float.ulpOfOne) / 2
        func gamma(_ m: Int) -> Double { Double(m) * u / (1 - Double(m) * u) }
        let w = embed.weight.scalars.map(Double.init), bias = embed.bias.scalars.map(Double.init)
        var worst = 0.0
        for o in 0..<n {
            let x = patch(o)
            for d in 0..<D {
                let terms = (0..<K).map { w[d * K + $0] * x[$0] }
                let want = bias[d] + terms.reduce(0, +)
                let bound = gamma(K + 1) * (abs(bias[d]) + terms.map(abs).reduce(0, +)) + u * abs(want) + 1e-30
                worst = max(worst, abs(Double(out.pointer[o * D + d]) - want) / bound)
            }
        }
        #expect(worst <= 1, "output error \(worst) of the bound")
        let dw = try #require(embed.weight.grad).scalars
        var worstGrad = 0.0
        for d in 0..<D {
            for k in 0..<K {
                let terms = (0..<n).map { Double(weights[$0 * D + d]) * patch($0)[k] }
                let want = terms.reduce(0, +)
                let bound = gamma(n) * terms.map(abs).reduce(0, +) + u * abs(want) + 1e-30
                worstGrad = max(worstGrad, abs(Double(dw[d * K + k]) - want) / bound)
            }
        }
        #expect(worstGrad <= 1, "weight gradient error \(worstGrad) of the bound")
    }

    @Test func normPixelTargetUsesUnbiasedVariance() {
        let p = Tensor([1, 2, 3, 4], shape: [1, 1, 4])
        let t = Patches.normalizedTarget(p)
        let sd = (5.0 / 3.0 + 1e-6).squareRoot()  // unbiased variance of 1…4 is 5/3
        #expect(abs(Double(t.pointer[0]) - (-1.5 / sd)) < 1e-6)
    }

    @Test(arguments: [(8, 4, 0), (8, 4, 2), (16, 4, 2), (6, 3, 1)])
    func windowPartitionIsARolledPermutation(grid: Int, window: Int, shift: Int) {
        let layout = WindowLayout(grid: grid, window: window, shift: shift)
        #expect(layout.partition.isInjective && layout.partition.count == grid * grid)
        #expect(Set(layout.partition.indices).count == grid * grid)
        // First token of window 0 is the map's (shift, shift) after the roll by −shift.
        #expect(Int(layout.partition.indices[0]) == shift * grid + shift)
        for (o, s) in layout.partition.indices.enumerated() { #expect(Int(layout.reverse.indices[Int(s)]) == o) }
        if shift == 0 { #expect(layout.mask == nil) }
    }

    @Test func shiftMaskSeparatesTheRolledRegions() throws {
        // Grid 8, window 4, shift 2: the last window (bottom-right) mixes 4 regions.
        let layout = WindowLayout(grid: 8, window: 4, shift: 2)
        let mask = try #require(layout.mask)
        #expect(mask.shape == [4, 16, 16])
        let m = mask.scalars
        #expect(m[0..<256].allSatisfy { $0 == 0 })  // window 0 lies in one region
        let last = Array(m[(3 * 256)..<(4 * 256)])
        // Token 0 (rolled (4, 4), region (1, 1)) vs token 3 (rolled (4, 7), region (1, 2)).
        #expect(last[0 * 16 + 3] == -100 && last[0 * 16 + 1] == 0 && last[0 * 16 + 5] == 0 && last[0 * 16 + 10] == -100)
        #expect(last.filter { $0 == 0 }.count == 4 * 16)  // four regions of 4 tokens each
    }

    @Test func relativeIndexIsQueryMinusKey() {
        let idx = WindowLayout.relativeIndex(window: 2)  // 4 tokens, 3×3 table
        // i = (0,0), j = (1,1): Δ = (−1, −1) → (0)(3) + 0 = 0; i = (1,1), j = (0,0): (2)(3) + 2 = 8.
        #expect(idx[0 * 4 + 3] == 0 && idx[3 * 4 + 0] == 8 && idx[0] == 4)
    }

    @Test func maskSamplersKeepTheirCounts() {
        var rng = RandomGenerator(seed: 1)
        guard case let .units(u) = Masking.randomUnits(batch: 3, unitGrid: 4, ratio: 0.6, rng: &rng) else {
            Issue.record("expected units"); return
        }
        for b in 0..<3 { #expect(u.scalars[(b * 16)..<((b + 1) * 16)].reduce(0, +) == 10) }  // ⌈16·0.6⌉
        guard case let .noise(n, keep) = Masking.noise(batch: 2, tokens: 64, ratio: 0.75, rng: &rng) else {
            Issue.record("expected noise"); return
        }
        #expect(n.shape == [2, 64] && keep == 16)
    }

    @Test func pixelShuffleMatchesItsDefinition() {
        // out[c, r·i + a, r·j + b] = in[(i, j), c·r² + a·r + b] with r = 2 on a 4 px image.
        let idx = SimMIM.pixelShuffleIndex(imageSize: 4, factor: 2)
        let (c, i, a, j, b) = (2, 1, 0, 0, 1)
        let out = (c * 4 + 2 * i + a) * 4 + 2 * j + b
        #expect(Int(idx.indices[out]) == (i * 2 + j) * 12 + c * 4 + a * 2 + b)
    }
}

#if canImport(Glibc)
import Glibc
#endif
