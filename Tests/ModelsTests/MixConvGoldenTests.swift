import Config
import Foundation
import Testing
import TestSupport
import TensorCore
@testable import Models

/// Golden tests for the tiny MixMAE and ConvMAE presets against fixtures written by
/// Tools/reference/mix_conv_reference.py (PyTorch, from the spec): outputs, loss, every gradient
/// and three AdamW steps, with the shared runner of `GoldenTests`.
@Suite("Golden: tiny MixMAE and ConvMAE against PyTorch") struct MixConvGoldenTests {
    @Test func mixmaeTiny() throws {
        let check = try GoldenTests.comparison("mixmae_tiny")
        let fx = check.fixture
        let model = MixMAE(config: Presets.named("mixmae_swin_tiny_patch2_window4_dec32d1b_32")!.model, seed: 1)
        let mask = MaskSpec.units(try fx.tensor("mask").tensor)  // (1, 4, 4): one mask for the batch
        // An odd batch first (the weights are replayed again by `run`): the middle sample pairs with itself.
        try GoldenTests.replayInit(model, fx)
        let odd = GradMode.withoutGrad { model.forward(try! fx.tensor("odd.images").tensor, mask: mask) }
        check.expect(odd.latent.scalars, "odd.latent")
        check.expect(odd.prediction.scalars, "odd.pred")
        check.expect([odd.loss.item], "odd.loss")
        try GoldenTests.run(model, check, mask: mask, betas: (0.9, 0.95), clip: nil)
        print(check.summary())
    }

    @Test func convmaeTiny() throws {
        let check = try GoldenTests.comparison("convmae_tiny")
        let fx = check.fixture
        let model = ConvMAE(config: Presets.named("convmae_convvit_tiny_patch8_dec32d1b_32")!.model, seed: 1)
        let spec = MaskSpec.noise(try fx.tensor("noise").tensor, keep: 4)
        try GoldenTests.run(model, check, mask: spec, betas: (0.9, 0.95), clip: nil)
        if case let .noise(n, keep) = spec {
            GoldenTests.expectEqual(model.shuffle(noise: n, keep: keep).mask.scalars, try fx.tensor("mask"))
        }
        print(check.summary())
    }
}
