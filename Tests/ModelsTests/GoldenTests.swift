import Foundation
import NN
import Optim
import Testing
import TestSupport
import TensorCore
@testable import Models

/// Golden tests against fixtures written by Tools/reference/mim_reference.py (PyTorch, from the
/// spec). Weights are replayed from the fixture's `init.*` ranges with our generator, then every
/// output, the loss, every gradient (or its fingerprint) and three AdamW steps are compared.
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

    /// |ours − reference| ≤ rtol·max|reference| + atol, reporting the name and worst difference.
    static func expectClose(_ ours: [Float], _ ref: FixtureTensor, rtol: Float = 1e-4, atol: Float = 1e-6,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        guard ours.count == ref.values.count else {
            Issue.record("\(ref.name): \(ours.count) values, fixture has \(ref.values.count)", sourceLocation: sourceLocation)
            return
        }
        let scale = ref.values.map(abs).max() ?? 0
        let worst = zip(ours, ref.values).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= rtol * scale + atol, "\(ref.name): max difference \(worst) (scale \(scale))",
                sourceLocation: sourceLocation)
    }

    /// Full gradients, or the fingerprint (norm, row sums, four rows) for large ones.
    static func expectGradients(_ model: any MIMModel, _ fx: Fixture) throws {
        for (name, p) in model.namedParameters() {
            let g = try #require(p.grad, "no gradient for \(name)").scalars
            if let full = fx["grad.\(name)"] {
                expectClose(g, full, rtol: 2e-4)
                continue
            }
            let rows = p.shape[0], cols = p.count / rows
            let norm = Float(g.map { Double($0) * Double($0) }.reduce(0, +).squareRoot())
            expectClose([norm], try fx.tensor("grad_norm.\(name)"), rtol: 2e-4)
            let sums = (0..<rows).map { r in Float(g[(r * cols)..<((r + 1) * cols)].map(Double.init).reduce(0, +)) }
            // Row sums cancel; compare them on the scale of the gradient's own rows.
            expectClose(sums, try fx.tensor("grad_row_sums.\(name)"), rtol: 5e-4, atol: 1e-5 * norm)
            let picked = [0, rows / 3, 2 * rows / 3, rows - 1].flatMap { r in Array(g[(r * cols)..<((r + 1) * cols)]) }
            expectClose(picked, try fx.tensor("grad_rows.\(name)"), rtol: 2e-4)
        }
    }

    static func run(_ model: any MIMModel, _ fx: Fixture, mask: MaskSpec, betas: (Float, Float), clip: Float?) throws {
        try replayInit(model, fx)
        let params = model.stateDict()
        for t in fx.tensors where t.name.hasPrefix("param.") {
            expectClose(try #require(params[String(t.name.dropFirst(6))]).scalars, t, rtol: 0, atol: 0)
        }
        let images = try fx.tensor("images").tensor
        let out = model.forward(images, mask: mask)
        expectClose(out.latent.scalars, try fx.tensor("latent"))
        expectClose(out.prediction.scalars, try fx.tensor("pred"))
        expectClose([out.loss.item], try fx.tensor("loss"))
        out.loss.backward()
        try expectGradients(model, fx)

        let opt = AdamW(parameters: model.namedParameters(), weightDecay: 0.05, betas: betas,
                        noDecay: model.excludedFromWeightDecay)
        var losses: [Float] = []
        for step in 0..<3 {
            if step > 0 {
                opt.zeroGrad()
                let o = model.forward(images, mask: mask)
                o.loss.backward()
            }
            if let clip { _ = clipGradNorm(model.parameters, maxNorm: clip) }
            opt.step(lr: 1e-3)
            losses.append(GradMode.withoutGrad { model.forward(images, mask: mask).loss.item })
        }
        expectClose(losses, try fx.tensor("losses_after_steps"), rtol: 2e-4)
        let after = model.stateDict()
        for t in fx.tensors where t.name.hasPrefix("param_after_3.") {
            // Adam divides by √v: where a gradient is tiny its float noise moves the update by a
            // few percent of one lr step, so allow 5% of lr (1e-3) absolute.
            expectClose(try #require(after[String(t.name.dropFirst(14))]).scalars, t, rtol: 2e-4, atol: 5e-5)
        }
    }

    @Test func maeTiny() throws {
        let fx = try Self.fixture("mae_tiny")
        let model = MAE(config: Presets.named("mae_vit_tiny_patch4_dec32d1b_32")!.model, seed: 1)
        expectClosePositions(model, fx)
        let noise = try fx.tensor("noise").tensor
        let spec = MaskSpec.noise(noise, keep: 16)
        try Self.run(model, fx, mask: spec, betas: (0.9, 0.95), clip: nil)
        if case let .noise(n, keep) = spec {
            let s = model.shuffle(noise: n, keep: keep)
            Self.expectClose(s.mask.scalars, try fx.tensor("mask"), rtol: 0, atol: 0)
        }
        let target = GradMode.withoutGrad { model.target(try! fx.tensor("images").tensor) }
        Self.expectClose(target.scalars, try fx.tensor("target"))
    }

    func expectClosePositions(_ model: MAE, _ fx: Fixture) {
        Self.expectClose(model.posEmbed.scalars, fx["buffer.pos_embed"]!, rtol: 0, atol: 1e-6)
        Self.expectClose(model.decoderPosEmbed.scalars, fx["buffer.decoder_pos_embed"]!, rtol: 0, atol: 1e-6)
    }

    @Test func simmimTiny() throws {
        let fx = try Self.fixture("simmim_tiny")
        let model = SimMIM(config: Presets.named("simmim_swin_tiny_patch2_window4_32")!.model, seed: 1)
        try Self.run(model, fx, mask: .units(try fx.tensor("mask").tensor), betas: (0.9, 0.999), clip: 5)
    }
}
