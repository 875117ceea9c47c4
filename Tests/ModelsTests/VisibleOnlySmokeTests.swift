import Config
import Foundation
import Testing
import TestSupport
import NN
import Optim
import TensorCore
@testable import Models

@Suite("Tiny UM-MAE and GreenMIM: shapes, gradients and learning") struct VisibleOnlySmokeTests {
    @Test(arguments: [Method.ummae, .greenmim])
    func forwardShapesAndEveryParameterGetsAGradient(method: Method) throws {
        let preset = try Presets.resolve(method: method, preset: "tiny")
        let model = try ModelRegistry.make(preset.model, seed: 1)
        let images = syntheticImages(count: 2, size: 32, seed: 2)
        var rng = RandomGenerator(seed: 3)
        let out = model.forward(images, mask: model.sampleMask(batch: 2, ratio: nil, rng: &rng))
        #expect(out.loss.item.isFinite && out.loss.item > 0)
        if method == .ummae {
            // 8×8 units of 4 px; compact 8×8 tokens → 2×2 after two merges; decoder on all 64 units.
            #expect(out.prediction.shape == [2, 64, 48] && out.latent.shape == [2, 4, 128] && out.mask.shape == [2, 8, 8])
        } else {
            // 4×4 units of 8 px, 4 kept → 4 final tokens.
            #expect(out.prediction.shape == [2, 16, 192] && out.latent.shape == [2, 4, 128] && out.mask.shape == [2, 4, 4])
        }
        out.loss.backward()
        for (name, p) in model.namedParameters() {
            let g = try #require(p.grad, "no gradient for \(name)")
            #expect(g.scalars.allSatisfy { $0.isFinite }, "non-finite gradient in \(name)")
            #expect(g.scalars.contains { $0 != 0 }, "zero gradient for \(name)")
        }
        let rec = model.reconstruct(images, mask: model.sampleMask(batch: 2, ratio: 0.5, rng: &rng))
        #expect(rec.image.shape == [2, 3, 32, 32] && rec.pixelMask.shape == [2, 1, 32, 32])
        #expect(rec.image.scalars.allSatisfy { $0.isFinite })
        let f = model.features(images, pool: .mean)
        #expect(f.shape == [2, model.config.encoderDim] && f.scalars.allSatisfy { $0.isFinite })
        #expect(model.features(images, pool: .mean).scalars == f.scalars)  // deterministic
        #expect(model.features(images, pool: .none).shape == [2, 16, 128])  // unmasked: the full 4×4 final map
    }

    @Test(arguments: [Method.ummae, .greenmim])
    func threeHundredStepsLowerTheLoss(method: Method) throws {
        let preset = try Presets.resolve(method: method, preset: "tiny")
        let model = try ModelRegistry.make(preset.model, seed: 4)
        let data = syntheticImages(count: 32, size: 32, seed: 5)
        let r = preset.recipe
        let opt = AdamW(parameters: model.namedParameters(), weightDecay: r.weightDecay, betas: (r.beta1, r.beta2),
                        noDecay: model.excludedFromWeightDecay)
        let steps = 300, batch = 8
        let schedule = WarmupCosineSchedule(baseLR: r.peakLR(batch: batch), minLR: r.minLR,
                                            warmupSteps: Int(Float(steps) * r.warmupFraction), totalSteps: steps)
        var rng = RandomGenerator(seed: 6)
        var losses: [Float] = []
        for step in 0..<steps {
            let images = data.slice(axis: 0, start: (step * batch) % 32, length: batch)
            let out = model.forward(images, mask: model.sampleMask(batch: batch, ratio: nil, rng: &rng))
            opt.zeroGrad()
            out.loss.backward()
            opt.step(lr: schedule.lr(step: step))
            losses.append(out.loss.item)
        }
        let first = losses.prefix(20).reduce(0, +) / 20, last = losses.suffix(20).reduce(0, +) / 20
        #expect(last < 0.7 * first, "\(method): loss \(first) → \(last)")
    }
}
