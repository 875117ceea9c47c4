import Config
import Foundation
import NN
import Optim
import Testing
import TestSupport
import TensorCore
@testable import Models

/// Golden tests against fixtures written by Tools/reference/mim_reference.py (PyTorch, from the
/// spec). Weights are replayed from the fixture's `init.*` ranges with our generator, then every
/// output, the loss, every gradient (or its fingerprint) and three AdamW steps are compared with
/// the float64 reference, each element within its measured float32 noise band (BandedComparison).
@Suite("Golden: tiny MAE and SimMIM against PyTorch") struct GoldenTests {
    static func fixture(_ name: String) throws -> Fixture {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "bin", subdirectory: "Fixtures"))
        return try Fixture(contentsOf: url)
    }

    /// Fills the parameters in the fixture's `init.*` order from one seeded stream.
    static func replayInit(_ model: any MIMModel, _ fx: Fixture) throws {
        var rng = RandomGenerator(seed: UInt64(try fx.tensor("config.init_seed").scalar))
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.tensor) })
        var filled = Set<String>()
        for t in fx.tensors where t.name.hasPrefix("init.") {
            let name = String(t.name.dropFirst(5))
            let p = try #require(params[name], "fixture initialises unknown parameter \(name)")
            let values = Init.uniform(p.shape, low: t.values[0], high: t.values[1], rng: &rng)
            p.pointer.update(from: values.pointer, count: p.count)
            filled.insert(name)
        }
        #expect(filled == Set(params.keys), "parameters without an init range: \(Set(params.keys).subtracting(filled).sorted())")
    }

    static func comparison(_ name: String) throws -> BandedComparison {
        BandedComparison(try fixture(name), label: name)
    }

    /// Values that must match exactly, or within `atol` (inputs, replayed weights, fixed tables, masks).
    static func expectEqual(_ ours: [Float], _ ref: FixtureTensor, atol: Float = 0,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        guard ours.count == ref.values.count else {
            Issue.record("\(ref.name): \(ours.count) values, fixture has \(ref.values.count)", sourceLocation: sourceLocation)
            return
        }
        let worst = zip(ours, ref.values).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= atol, "\(ref.name): max difference \(worst)", sourceLocation: sourceLocation)
    }

    /// Full gradients, or the fingerprint (norm, row sums, four rows) for large ones.
    static func expectGradients(_ model: any MIMModel, _ check: BandedComparison) throws {
        for (name, p) in model.namedParameters() {
            let g = try #require(p.grad, "no gradient for \(name)").scalars
            if check.fixture["grad.\(name)"] != nil {
                check.expect(g, "grad.\(name)")
                continue
            }
            let rows = p.shape[0], cols = p.count / rows
            check.expect([Float(g.map { Double($0) * Double($0) }.reduce(0, +).squareRoot())], "grad_norm.\(name)")
            let sums = (0..<rows).map { r in Float(g[(r * cols)..<((r + 1) * cols)].map(Double.init).reduce(0, +)) }
            check.expect(sums, "grad_row_sums.\(name)")
            let picked = [0, rows / 3, 2 * rows / 3, rows - 1].flatMap { r in Array(g[(r * cols)..<((r + 1) * cols)]) }
            check.expect(picked, "grad_rows.\(name)")
        }
    }

    static func run(_ model: any MIMModel, _ check: BandedComparison, mask: MaskSpec, betas: (Float, Float), clip: Float?) throws {
        let fx = check.fixture
        try replayInit(model, fx)
        let params = model.stateDict()
        for t in fx.tensors where t.name.hasPrefix("param.") {
            expectEqual(try #require(params[String(t.name.dropFirst(6))]).scalars, t)
        }
        let images = try fx.tensor("images").tensor
        let out = model.forward(images, mask: mask)
        check.expect(out.latent.scalars, "latent")
        check.expect(out.prediction.scalars, "pred")
        check.expect([out.loss.item], "loss")
        out.loss.backward()
        try expectGradients(model, check)

        let opt = AdamW(parameters: model.namedParameters(), weightDecay: 0.05, betas: betas,
                        noDecay: model.excludedFromWeightDecay)
        var losses: [Float] = [], norms: [Float] = []
        for step in 0..<3 {
            if step > 0 {
                opt.zeroGrad()
                let o = model.forward(images, mask: mask)
                o.loss.backward()
            }
            if let clip { norms.append(clipGradNorm(model.parameters, maxNorm: clip)) }
            opt.step(lr: 1e-3)
            losses.append(GradMode.withoutGrad { model.forward(images, mask: mask).loss.item })
        }
        check.expect(losses, "losses_after_steps")
        if fx["grad_norms"] != nil { check.expect(norms, "grad_norms") }
        let after = model.stateDict()
        for t in fx.tensors where t.name.hasPrefix("param_after_3.") {
            check.expect(try #require(after[String(t.name.dropFirst(14))]).scalars, t.name)
        }
    }

    @Test func maeTiny() throws {
        let check = try Self.comparison("mae_tiny")
        let fx = check.fixture
        let model = MAE(config: Presets.named("mae_vit_tiny_patch4_dec32d1b_32")!.model, seed: 1)
        // The sin-cos tables are computed in Double and rounded once, on both sides.
        Self.expectEqual(model.posEmbed.scalars, try fx.tensor("buffer.pos_embed"), atol: 1e-6)
        Self.expectEqual(model.decoderPosEmbed.scalars, try fx.tensor("buffer.decoder_pos_embed"), atol: 1e-6)
        let noise = try fx.tensor("noise").tensor
        let spec = MaskSpec.noise(noise, keep: 16)
        try Self.run(model, check, mask: spec, betas: (0.9, 0.95), clip: nil)
        if case let .noise(n, keep) = spec {
            Self.expectEqual(model.shuffle(noise: n, keep: keep).mask.scalars, try fx.tensor("mask"))
        }
        let target = GradMode.withoutGrad { model.target(try! fx.tensor("images").tensor) }
        check.expect(target.scalars, "target")
        print(check.summary())
    }

    @Test func simmimTiny() throws {
        let check = try Self.comparison("simmim_tiny")
        let model = SimMIM(config: Presets.named("simmim_swin_tiny_patch2_window4_32")!.model, seed: 1)
        try Self.run(model, check, mask: .units(try check.fixture.tensor("mask").tensor), betas: (0.9, 0.999), clip: 5)
        print(check.summary())
    }
}
