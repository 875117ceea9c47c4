import Config
import Testing
import TestSupport
import NN
import TensorCore
@testable import Models

/// GreenMIM against dense masked Swin (the equivalence that makes visible-only attention
/// correct), its layouts, its decoder orderings and the weight compatibility with a dense Swin.
@Suite("GreenMIM: group window attention equals dense masked Swin") struct GreenMIMTests {
    static let tiny = Presets.named("greenmim_swin_tiny_patch2_window4_dec32d1b_32")!.model

    /// Swin window attention over the full grid (cyclic roll, region mask) with the masked
    /// tokens removed from every window: their key columns get −100, like any other excluded pair.
    static func denseMaskedBlock(_ block: SwinBlock, _ x: Tensor, masked: [Bool]) -> Tensor {
        let (B, L, C) = (x.shape[0], x.shape[1], x.shape[2])
        let layout = block.layout, n = layout.tokensPerWindow, nW = layout.windows
        let mask = layout.mask?.copy() ?? Tensor(zeros: [nW, n, n])
        for w in 0..<nW { for j in 0..<n where masked[Int(layout.partition.indices[w * n + j])] {
            for i in 0..<n { mask.pointer[(w * n + i) * n + j] -= 100 }
        } }
        let windows = block.norm1(x).gatherRows(layout.partition, batch: B, shape: [B * nW, n, C])
        let attended = block.attn(windows, mask: mask)
        let h = x + attended.gatherRows(layout.reverse, batch: B, shape: [B, L, C])
        return h + block.mlp(block.norm2(h))
    }

    static func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    /// One block both ways, forward and backward, for a token mask of the grid.
    func compareBlock(grid: Int, window: Int, shift: Int, masked: [Bool], mode: GroupingMode, seed: UInt64) throws -> GroupPlan {
        var rng = RandomGenerator(seed: seed)
        let (B, C, H) = (2, 32, 2)
        let block = SwinBlock(dim: C, heads: H, layout: WindowLayout(grid: grid, window: window, shift: shift),
                              mlpRatio: 4, eps: 1e-6, rng: &rng)
        // Non-trivial biases so the relative-position path matters.
        for (_, p) in block.namedParameters() where p.rank == 1 || p.shape[1] == H {
            for i in 0..<p.count { p.pointer[i] += rng.normal() * 0.2 }
        }
        let v = VisibleTokens(grid: grid, masked: masked)
        let plan = GroupPlan(visible: v, window: window, shift: shift, heads: H, width: C, mode: mode, groupSizeMax: nil)
        let full = Init.normal([B, grid * grid, C], std: 1, rng: &rng)
        let visibleRows = RowIndex((0..<v.count).map { v.rows[$0] * grid + v.cols[$0] }, sourceRows: grid * grid)
        let seedGrad = Init.normal([B, v.count, C], std: 1, rng: &rng)

        full.requiresGrad = true
        let green = block(visible: full.gatherRows(visibleRows, batch: B, shape: [B, v.count, C]), plan: plan)
        green.backward(seed: seedGrad)
        let greenGrads = block.namedParameters().map { $0.tensor.grad!.scalars }
        let greenInput = full.grad!.scalars
        block.zeroGrad()
        full.grad = nil

        let dense = Self.denseMaskedBlock(block, full, masked: masked).gatherRows(visibleRows, batch: B, shape: [B, v.count, C])
        dense.backward(seed: seedGrad)
        let denseGrads = block.namedParameters().map { $0.tensor.grad!.scalars }

        let what = "\(mode) grid \(grid) window \(window) shift \(shift) visible \(v.count) (\(plan.isSingleSequence ? "one sequence" : "\(plan.groups) groups of \(plan.groupSize)"))"
        #expect(Self.maxDifference(green.scalars, dense.scalars) < 1e-5, "forward, \(what)")
        #expect(Self.maxDifference(greenInput, full.grad!.scalars) < 1e-5, "input gradient, \(what)")
        for ((name, _), (a, b)) in zip(block.namedParameters(), zip(greenGrads, denseGrads)) {
            let scale = max(b.map(abs).max() ?? 0, 1)
            #expect(Self.maxDifference(a, b) < 1e-5 * scale, "gradient of \(name), \(what)")
        }
        return plan
    }

    @Test func blockEqualsDenseOverRandomMasksAndShifts() throws {
        var rng = RandomGenerator(seed: 7)
        var grouped = 0, single = 0, unevenShifted = 0
        for trial in 0..<12 {
            let (grid, window) = trial % 3 == 2 ? (12, 6) : (8, 4)
            let keep = [0.7, 0.4, 0.15][trial % 3]
            let masked = (0..<(grid * grid)).map { _ in rng.uniform() > Float(keep) }
            guard masked.contains(false) else { continue }
            for shift in [0, window / 2] {
                let plan = try compareBlock(grid: grid, window: window, shift: shift, masked: masked,
                                            mode: trial % 2 == 0 ? .search : .fixed, seed: UInt64(100 + trial))
                if plan.isSingleSequence { single += 1 } else { grouped += 1 }
                if shift > 0 && !plan.isSingleSequence && Set(plan.windowCounts).count > 1 { unevenShifted += 1 }
            }
        }
        #expect(grouped >= 8 && single >= 4 && unevenShifted >= 4, "paths: \(grouped) grouped, \(single) single, \(unevenShifted) uneven shifted")
    }

    @Test func tinyLayoutUsesGroupingAtStageOneAndOneSequenceAtStageTwo() throws {
        var rng = RandomGenerator(seed: 3)
        let model = GreenMIM(config: Self.tiny, seed: 0)
        let (masked, _) = model.batchMask(model.sampleMask(batch: 2, ratio: nil, rng: &rng))
        #expect(masked.filter { !$0 }.count == 4)
        let layout = GreenLayout(config: Self.tiny, maskedUnits: masked)
        #expect(layout.stages.map(\.visible.count) == [64, 16, 4])
        #expect(!layout.stages[0].plain.isSingleSequence && !layout.stages[0].shifted.isSingleSequence)
        #expect(layout.stages[1].plain.isSingleSequence && layout.stages[2].plain.isSingleSequence)
        for plan in [layout.stages[0].plain, layout.stages[0].shifted] {
            // Block-diagonal: within a group, 0 exactly between tokens of one window; padding −100.
            let groups = try #require(plan.windowGroups)
            #expect(groups.flatMap { $0 }.sorted() == Array(plan.windowCounts.indices))
            let g = plan.groupSize
            for (k, group) in groups.enumerated() {
                var labels: [Int] = []
                for w in group { labels += [Int](repeating: w, count: plan.windowCounts[w]) }
                #expect(labels.count <= g)
                labels += [Int](repeating: -1, count: g - labels.count)
                for a in 0..<g { for b in 0..<g {
                    let expected: Float = labels[a] >= 0 && labels[a] == labels[b] ? 0 : -100
                    #expect(plan.mask.pointer[(k * g + a) * g + b] == expected)
                } }
            }
        }
    }

    /// A dense masked Swin encoder: every block as `denseMaskedBlock` with the stage's token
    /// mask, dense patch merging; the visible final tokens must equal GreenMIM's encoder.
    @Test func encoderEqualsDenseMaskedSwinForwardAndBackward() throws {
        let model = GreenMIM(config: Self.tiny, seed: 5)
        let encoder = model.encoder
        var rng = RandomGenerator(seed: 8)
        let images = Init.normal([2, 3, 32, 32], std: 1, rng: &rng)
        let (masked, _) = model.batchMask(model.sampleMask(batch: 2, ratio: nil, rng: &rng))
        let layout = GreenLayout(config: Self.tiny, maskedUnits: masked)
        let green = encoder(images, layout: layout)  // (2, 4, 128)
        let seedGrad = Init.normal(green.shape, std: 1, rng: &rng)
        green.backward(seed: seedGrad)
        let greenGrads = encoder.namedParameters().map { ($0.name, $0.tensor.grad!.scalars) }
        encoder.zeroGrad()

        var x = encoder.patchEmbed(images)
        for (s, stage) in encoder.layers.items.enumerated() {
            let grid = Self.tiny.stageGrids[s], f = grid / Self.tiny.unitGrid
            let tokenMask = (0..<(grid * grid)).map { masked[(($0 / grid) / f) * Self.tiny.unitGrid + ($0 % grid) / f] }
            for block in stage.blocks.items { x = Self.denseMaskedBlock(block, x, masked: tokenMask) }
            if let down = stage.downsample { x = down(x) }
        }
        let last = layout.stages.last!.visible
        let rows = RowIndex((0..<last.count).map { last.rows[$0] * last.grid + last.cols[$0] }, sourceRows: last.grid * last.grid)
        let dense = encoder.norm(x).gatherRows(rows, batch: 2, shape: green.shape)
        dense.backward(seed: seedGrad)
        #expect(Self.maxDifference(green.scalars, dense.scalars) < 1e-4, "encoder forward")
        for ((name, a), (_, p)) in zip(greenGrads, encoder.namedParameters()) {
            let b = p.grad!.scalars, scale = max(b.map(abs).max() ?? 0, 1)
            #expect(Self.maxDifference(a, b) < 2e-5 * scale, "gradient of \(name)")
        }
    }

    @Test func weightsAreDenseSwinWeightsBothWays() throws {
        let green = GreenMIM(config: Self.tiny, seed: 1)
        var simConfig = Presets.named("simmim_swin_tiny_patch2_window4_32")!.model
        simConfig.layerNormEps = Self.tiny.layerNormEps
        let simmim = SimMIM(config: simConfig, seed: 2)
        let greenNames = Set(green.encoder.stateDict().keys), simNames = Set(simmim.encoder.stateDict().keys)
        #expect(simNames.subtracting(greenNames) == ["mask_token"] && greenNames.isSubset(of: simNames))
        #expect(greenNames.contains("layers.0.blocks.1.attn.relative_position_bias_table")
                && greenNames.contains("layers.1.downsample.reduction.weight"))

        // GreenMIM → dense Swin: the dense Swin computes what GreenMIM's dense and visible paths compute.
        try simmim.encoder.loadState(green.encoder.stateDict(), strict: false)
        var rng = RandomGenerator(seed: 4)
        let images = Init.normal([2, 3, 32, 32], std: 1, rng: &rng)
        let reference = GradMode.withoutGrad { simmim.encoder(images, tokenMask: nil) }
        let dense = green.features(images, pool: .none)
        let allVisible = GradMode.withoutGrad {
            green.encoder(images, layout: GreenLayout(config: Self.tiny, maskedUnits: [Bool](repeating: false, count: 16)))
        }
        #expect(Self.maxDifference(reference.scalars, dense.scalars) < 1e-5)
        #expect(Self.maxDifference(reference.scalars, allVisible.scalars) < 1e-4)

        // Dense Swin → GreenMIM, strictly (the mask token is SimMIM's own).
        let other = SimMIM(config: simConfig, seed: 3)
        var state = other.encoder.stateDict()
        state["mask_token"] = nil
        try green.encoder.loadState(state, strict: true)
        let back = GradMode.withoutGrad { other.encoder(images, tokenMask: nil) }
        #expect(Self.maxDifference(back.scalars, green.features(images, pool: .none).scalars) < 1e-5)
    }

    @Test func decoderPlacesLatentsAtTrueOrReferencePositions() throws {
        var config = Self.tiny
        // Noise whose order (5, 2, 9, 0, …) is not raster order: units 0, 2, 5, 9 stay visible.
        let noiseValues: [Float] = [0.4, 0.9, 0.2, 0.8, 0.95, 0.1, 0.7, 0.6, 0.85, 0.3, 0.5, 0.55, 0.65, 0.75, 0.45, 0.98]
        let spec = MaskSpec.noise(Tensor(noiseValues, shape: [1, 16]), keep: 4)
        let trueModel = GreenMIM(config: config, seed: 1)
        let (masked, order) = trueModel.batchMask(spec)
        #expect(masked.indices.filter { !masked[$0] } == [0, 2, 5, 9] && Array(order!.prefix(4)) == [5, 2, 9, 0])
        let p = trueModel.placement(masked: masked, noiseOrder: order, batch: 2)
        // Sample 1, true positions: units 0, 2, 5, 9 read latents 4…7 (raster order); masked read row 8.
        #expect([0, 2, 5, 9, 1].map { Int(p.indices[16 + $0]) } == [4, 5, 6, 7, 8])
        config.decoderPositions = .reference
        let refModel = GreenMIM(config: config, seed: 1)
        let r = refModel.placement(masked: masked, noiseOrder: order, batch: 2)
        // B8 (docs/methods/common.md) on raster-ordered latents: latent k goes to order[k] = 5, 2, 9, 0.
        #expect([5, 2, 9, 0, 1].map { Int(r.indices[$0]) } == [0, 1, 2, 3, 8])
        let images = syntheticImages(count: 2, size: 32, seed: 9)
        let a = GradMode.withoutGrad { trueModel.forward(images, mask: spec).loss.item }
        let b = GradMode.withoutGrad { refModel.forward(images, mask: spec).loss.item }
        #expect(a.isFinite && b.isFinite && a != b)
    }
}
