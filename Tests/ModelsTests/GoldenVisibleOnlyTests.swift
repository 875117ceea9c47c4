import Config
import Testing
import TestSupport
import TensorCore
@testable import Models

/// Golden tests against Tools/reference/visible_only_reference.py (PyTorch, from the spec), with
/// the same replay and comparisons as the baselines' (GoldenTests.run), plus the loss of the
/// reference decoder ordering.
@Suite("Golden: tiny UM-MAE and GreenMIM against PyTorch") struct GoldenVisibleOnlyTests {
    @Test func ummaeTiny() throws {
        let check = try GoldenTests.comparison("ummae_tiny")
        let fx = check.fixture
        var config = Presets.named("ummae_swin_tiny_patch2_window4_posmlp16_dec32d1b_32")!.model
        let spec = MaskSpec.uniform(primary: try fx.tensor("primary").tensor, secondary: try fx.tensor("secondary").tensor)
        let model = UMMAE(config: config, seed: 1)
        GoldenTests.expectEqual(model.decoderPosEmbed.scalars, try fx.tensor("buffer.decoder_pos_embed"), atol: 1e-6)
        try GoldenTests.run(model, check, mask: spec, betas: (0.9, 0.95), clip: nil)

        config.decoderPositions = .reference
        let reference = UMMAE(config: config, seed: 1)
        try GoldenTests.replayInit(reference, fx)
        let loss = GradMode.withoutGrad { reference.forward(try! fx.tensor("images").tensor, mask: spec).loss.item }
        check.expect([loss], "loss_reference_order")
        print(check.summary())
    }

    @Test func greenmimTiny() throws {
        let check = try GoldenTests.comparison("greenmim_tiny")
        let fx = check.fixture
        var config = Presets.named("greenmim_swin_tiny_patch2_window4_dec32d1b_32")!.model
        let spec = MaskSpec.noise(try fx.tensor("noise").tensor, keep: 4)
        let model = GreenMIM(config: config, seed: 1)
        GoldenTests.expectEqual(model.decoderPosEmbed.scalars, try fx.tensor("buffer.decoder_pos_embed"), atol: 1e-6)
        try GoldenTests.run(model, check, mask: spec, betas: (0.9, 0.95), clip: nil)
        let images = try fx.tensor("images").tensor
        GoldenTests.expectEqual(GradMode.withoutGrad { model.forward(images, mask: spec).mask.scalars }, try fx.tensor("mask"))

        config.decoderPositions = .reference
        let reference = GreenMIM(config: config, seed: 1)
        try GoldenTests.replayInit(reference, fx)
        let loss = GradMode.withoutGrad { reference.forward(images, mask: spec).loss.item }
        check.expect([loss], "loss_reference_order")
        print(check.summary())
    }
}
