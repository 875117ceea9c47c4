import Config
import Testing
import TestSupport
import TensorCore
@testable import Models

/// `trainingLoss` predicts only the units the loss scores (MAE, ConvMAE, UM-MAE, GreenMIM: the
/// decoder's last block attends over every token but runs its MLP on the scored rows alone,
/// and so do the final norm and the prediction head), yet must give `forward(…).loss`: the
/// loss and every parameter's gradient. The two passes differ only in how GEMMs and column
/// sums group their float32 additions (fewer rows); a reordered sum of K terms moves by at
/// most about K·u of the sum of their magnitudes (u = 2⁻²⁴), so with K the longest sum of the
/// step (a decoder weight gradient's B·T rows) each value may differ by K·u of the largest
/// gradient magnitude. (Of the model's, not its own tensor's: a sum that cancels, such as the
/// gradient of a bias that shifts every attention score alike, which is 0 in exact arithmetic,
/// has no magnitude of its own.) Predicting the wrong rows, or dropping one, moves the loss by
/// far more.
@Suite("The training loss predicts only what it scores") struct TrainingLossTests {
    @Test(arguments: ["mae", "convmae", "ummae", "greenmim"])
    func trainingLossIsTheForwardLoss(method: String) throws {
        let preset = try Presets.resolve(method: Method(rawValue: method)!, preset: "tiny")
        let model = try ModelRegistry.make(preset.model, seed: 1)
        let batch = 3
        let images = syntheticImages(count: batch, size: preset.model.imageSize, seed: 2)
        var rng = RandomGenerator(seed: 3)
        let mask = model.sampleMask(batch: batch, ratio: nil, rng: &rng)
        let parameters = model.namedParameters()
        func run(_ trimmed: Bool) -> (loss: Float, grads: [[Float]]) {
            for (_, p) in parameters { p.grad = nil }
            let loss = trimmed ? model.trainingLoss(images, mask: mask) : model.forward(images, mask: mask).loss
            loss.backward()
            return (loss.item, parameters.map { $0.tensor.grad?.scalars ?? [] })
        }
        let full = run(false), trimmed = run(true)
        let units = preset.model.unitGrid * preset.model.unitGrid
        let k = Float(batch * (units + 1)) * Float.ulpOfOne / 2  // K·u
        #expect(abs(full.loss - trimmed.loss) <= k * full.loss, "loss \(full.loss) vs \(trimmed.loss)")
        let scale = full.grads.joined().map { abs($0) }.max() ?? 0
        for (i, (name, _)) in parameters.enumerated() {
            #expect(full.grads[i].count == trimmed.grads[i].count && maxAbsDiff(full.grads[i], trimmed.grads[i]) <= k * scale,
                    "\(name): \(maxAbsDiff(full.grads[i], trimmed.grads[i])) of \(scale)")
        }
    }
}
