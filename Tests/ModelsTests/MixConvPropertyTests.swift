import Config
import Testing
import TestSupport
import TensorCore
@testable import Models

/// The structural promises of MixMAE and ConvMAE, checked bit for bit: no information crosses
/// between two mixed images, and masked pixels never reach a visible output of any stage.
@Suite("MixMAE isolation and ConvMAE masked convolution") struct MixConvPropertyTests {
    static func mixmae() -> MixMAE {
        MixMAE(config: Presets.named("mixmae_swin_tiny_patch2_window4_dec32d1b_32")!.model, seed: 7)
    }

    static func convmae() -> ConvMAE {
        ConvMAE(config: Presets.named("convmae_convvit_tiny_patch8_dec32d1b_32")!.model, seed: 7)
    }

    /// Adds noise to every pixel of sample `b` where `where` is true.
    static func perturbed(_ images: Tensor, sample b: Int, seed: UInt64, where pick: (Int, Int) -> Bool = { _, _ in true }) -> Tensor {
        let out = images.copy()
        let S = images.shape[2]
        var rng = RandomGenerator(seed: seed)
        for c in 0..<3 { for y in 0..<S { for x in 0..<S where pick(y, x) {
            out.pointer[((b * 3 + c) * S + y) * S + x] += rng.normal() * 3
        } } }
        return out
    }

    /// Rows `rows` of (B, L, C) sample `b`.
    static func tokens(_ t: Tensor, sample b: Int, _ rows: [Int]) -> [Float] {
        let (L, C) = (t.shape[1], t.shape[2])
        let all = t.scalars
        var out: [Float] = []
        for l in rows {
            let start = (b * L + l) * C
            out += all[start..<(start + C)]
        }
        return out
    }

    @Test(arguments: [0, 1])
    func changingOneImageLeavesTheOtherImagesEncoderOutputsUnchanged(changed: Int) {
        let model = Self.mixmae()
        let images = syntheticImages(count: 2, size: 32, seed: 8)
        var rng = RandomGenerator(seed: 9)
        let spec = model.sampleMask(batch: 2, ratio: nil, rng: &rng)
        let units = model.sharedUnits(spec, batch: 2)
        let p = model.plan(batch: 2, units: units)
        let z = GradMode.withoutGrad { model.encode(images, plan: p) }
        let z2 = GradMode.withoutGrad { model.encode(Self.perturbed(images, sample: changed, seed: 10), plan: p) }
        let kept = 1 - changed
        // The untouched image sits in its own sample at visible units and in its partner's at masked ones.
        let visible = units.indices.filter { !units[$0] }, masked = units.indices.filter { units[$0] }
        #expect(Self.tokens(z, sample: kept, visible) == Self.tokens(z2, sample: kept, visible))
        #expect(Self.tokens(z, sample: changed, masked) == Self.tokens(z2, sample: changed, masked))
        // …while the changed image's own tokens do move.
        #expect(Self.tokens(z, sample: changed, visible) != Self.tokens(z2, sample: changed, visible))
        #expect(visible.count == 8 && masked.count == 8)
    }

    @Test func reconstructionOfAnImageReadsOnlyItsOwnVisibleUnits() {
        let model = Self.mixmae()
        let images = syntheticImages(count: 2, size: 32, seed: 20)
        var rng = RandomGenerator(seed: 21)
        let spec = model.sampleMask(batch: 2, ratio: nil, rng: &rng)
        let units = model.sharedUnits(spec, batch: 2)
        let rec = model.reconstruct(images, mask: spec)
        #expect(rec.note != nil && rec.pixelMask.shape == [2, 1, 32, 32])
        // Image 0's reconstruction is untouched by its partner and by its own masked pixels.
        let partner = model.reconstruct(Self.perturbed(images, sample: 1, seed: 22), mask: spec)
        let ownMasked = model.reconstruct(Self.perturbed(images, sample: 0, seed: 23) { y, x in units[(y / 8) * 4 + x / 8] }, mask: spec)
        let first = 3 * 32 * 32
        func maskedPixels(_ r: Reconstruction) -> [Float] {
            (0..<first).filter { units[(($0 % 1024) / 32 / 8) * 4 + ($0 % 32) / 8] }.map { r.image.pointer[$0] }
        }
        #expect(Array(partner.image.scalars[0..<first]) == Array(rec.image.scalars[0..<first]))
        // (De-normalisation uses the ground-truth statistics of the masked units themselves, so
        // compare the raw branch-A output there.)
        let p = model.plan(batch: 2, units: units)
        let raw = GradMode.withoutGrad { model.decode(model.encode(images, plan: p), plan: p) }
        let rawOwn = GradMode.withoutGrad {
            model.decode(model.encode(Self.perturbed(images, sample: 0, seed: 23) { y, x in units[(y / 8) * 4 + x / 8] }, plan: p), plan: p)
        }
        #expect(Self.tokens(raw, sample: 0, Array(0..<16)) == Self.tokens(rawOwn, sample: 0, Array(0..<16)))
        #expect(maskedPixels(ownMasked) != maskedPixels(rec))  // the statistics did move
    }

    @Test func oddBatchPairsTheMiddleSampleWithItself() {
        let model = Self.mixmae()
        let images = syntheticImages(count: 3, size: 32, seed: 11)
        var rng = RandomGenerator(seed: 12)
        let spec = model.sampleMask(batch: 3, ratio: nil, rng: &rng)
        let units = model.sharedUnits(spec, batch: 3)
        #expect((0..<3).map { MixPlan.partner($0, batch: 3) } == [2, 1, 0])
        let three = GradMode.withoutGrad { model.forward(images, mask: spec) }
        #expect(three.loss.item.isFinite && three.prediction.shape == [3, 16, 192])
        // The middle image alone (a batch of one pairs with itself too) gives the same encoding and
        // prediction as inside the batch of three: its partners never touch it. (Equal up to the
        // GEMM's blocking, which depends on the row count.)
        let middle = images.slice(axis: 0, start: 1, length: 1).copy()
        let one = GradMode.withoutGrad { model.forward(middle, mask: model.sampleMaskRow(units, batch: 1)) }
        let latentDiff = maxAbsDiff(Self.tokens(three.latent, sample: 1, Array(0..<16)), one.latent.scalars)
        let predDiff = maxAbsDiff(Self.tokens(three.prediction, sample: 1, Array(0..<16)), one.prediction.scalars)
        #expect(latentDiff < 1e-5 && predDiff < 1e-5, "latent \(latentDiff), prediction \(predDiff)")
        // With a different partner the middle image's prediction would change: its own pixels do matter.
        let other = GradMode.withoutGrad { model.forward(Self.perturbed(images, sample: 1, seed: 19), mask: spec) }
        #expect(maxAbsDiff(Self.tokens(other.prediction, sample: 1, Array(0..<16)), one.prediction.scalars) > 1e-3)
    }

    @Test func mixPlanIsComplementaryAndUnmixesEachImageFromItsOtherHalf() {
        let model = Self.mixmae()
        var rng = RandomGenerator(seed: 13)
        let units = model.sharedUnits(model.sampleMask(batch: 4, ratio: nil, rng: &rng), batch: 4)
        let p = model.plan(batch: 4, units: units)
        let n = 16
        for i in 0..<4 { for l in 0..<n {
            let a = p.branches.indices[i * n + l], b = p.branches.indices[(4 + i) * n + l]
            #expect((a == Int32(4 * n)) != (b == Int32(4 * n)), "exactly one branch holds the mask token")
            // Branch A of sample i is read at masked units, branch B of the partner elsewhere.
            let src = Int(p.unmix.indices[i * n + l])
            #expect(units[l] ? src == i * n + l : src == (4 + 3 - i) * n + l)
        } }
        // Stage 1's 4×4 windows are whole 8 px units (no mask needed); stages 2 and 3 mix sources.
        #expect(p.sourceMasks[0] == nil)
        for k in 1...2 {
            #expect(p.sourceMasks[k].map { Set($0.scalars) } == [0, -1e30])
        }
    }

    @Test func perturbingMaskedPixelsLeavesEveryVisibleOutputOfEveryStageUnchanged() {
        let model = Self.convmae()
        let images = syntheticImages(count: 2, size: 32, seed: 14)
        var rng = RandomGenerator(seed: 15)
        guard case let .noise(noise, keep) = model.sampleMask(batch: 2, ratio: nil, rng: &rng) else {
            Issue.record("ConvMAE samples noise"); return
        }
        let s = model.shuffle(noise: noise, keep: keep)
        var changed = images
        for b in 0..<2 {
            changed = Self.perturbed(changed, sample: b, seed: 16 + UInt64(b)) { y, x in
                s.mask.pointer[b * 16 + (y / 8) * 4 + x / 8] == 1
            }
        }
        let (a, c) = GradMode.withoutGrad {
            (model.convStages(images, visibility: (s.visibility1, s.visibility2)),
             model.convStages(changed, visibility: (s.visibility1, s.visibility2)))
        }
        func visible(_ t: Tensor, _ v: Tensor) -> [Float] {  // channels-last map, visibility (B, H, W, 1)
            let C = t.dim(-1), all = t.scalars
            var out: [Float] = []
            for r in 0..<v.count where v.pointer[r] == 1 { out += all[(r * C)..<((r + 1) * C)] }
            return out
        }
        #expect(visible(a.stage1, s.visibility1) == visible(c.stage1, s.visibility1))
        #expect(visible(a.stage2, s.visibility2) == visible(c.stage2, s.visibility2))
        #expect(a.stage1.scalars != c.stage1.scalars)  // masked pixels did change
        let vis3 = GradMode.withoutGrad { Tensor(repeating: 1, shape: s.mask.shape) - s.mask }
        for (x, y) in [(a.x, c.x), (a.e1, c.e1), (a.e2, c.e2)] {
            #expect(visible(x, vis3) == visible(y, vis3))
        }
        let (la, lc) = GradMode.withoutGrad { (model.encode(images, shuffle: s), model.encode(changed, shuffle: s)) }
        #expect(la.scalars == lc.scalars)
    }

    @Test func multiScaleFeaturesHaveEveryStage() {
        let model = Self.convmae()
        let f = model.multiScaleFeatures(syntheticImages(count: 2, size: 32, seed: 18))
        #expect(f.stage1.shape == [2, 16, 16, 16] && f.stage2.shape == [2, 8, 8, 32] && f.stage3.shape == [2, 4, 4, 64])
        #expect(f.pooled.shape == [2, 64] && f.pooled.scalars.allSatisfy { $0.isFinite })
        #expect(model.features(syntheticImages(count: 2, size: 32, seed: 18), pool: .none).shape == [2, 16, 64])
    }
}

extension MixMAE {
    /// A (B, U, U) unit spec repeating `units` (test helper).
    func sampleMaskRow(_ units: [Bool], batch: Int) -> MaskSpec { .units(unitTensor(units, batch: batch)) }
}
