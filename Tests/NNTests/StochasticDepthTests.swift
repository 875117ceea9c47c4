import NN
import Testing
import TensorCore

@Suite("Stochastic depth (drop path)") struct StochasticDepthTests {
    /// Outside training the branch passes as it is; inside, each sample is dropped with
    /// probability r (within 4.5 σ of the binomial) or scaled by exactly 1/(1 − r), so the mean
    /// is kept; the gradient of a kept sample is that scale, of a dropped one 0; the same
    /// generator draws the same samples.
    @Test func dropsWholeSamplesAtTheRateAndKeepsTheExpectation() {
        let n = 20_000, rate: Float = 0.3
        let x = Tensor(repeating: 1, shape: [n, 2, 3])
        #expect(x.droppingPath(rate: rate) === x)
        x.requiresGrad = true
        var rng = RandomGenerator(seed: 5)
        let y = StochasticDepth.training(rng: &rng) { x.droppingPath(rate: rate) }
        let rows = (0..<n).map { y.pointer[$0 * 6] }
        let dropped = rows.filter { $0 == 0 }.count
        let sigma = (Double(n) * 0.3 * 0.7).squareRoot()
        #expect(abs(Double(dropped) - 0.3 * Double(n)) < 4.5 * sigma, "\(dropped) of \(n) dropped")
        #expect(rows.allSatisfy { $0 == 0 || $0 == 1 / (1 - rate) })
        for i in 0..<n { #expect((0..<6).allSatisfy { y.pointer[i * 6 + $0] == rows[i] }) }
        y.backward(seed: Tensor(repeating: 1, shape: [n, 2, 3]))
        #expect((0..<(n * 6)).allSatisfy { x.grad!.pointer[$0] == rows[$0 / 6] })
        var again = RandomGenerator(seed: 5)
        let z = StochasticDepth.training(rng: &again) { x.droppingPath(rate: rate) }
        #expect(z.scalars == y.scalars)
        #expect(rng.next() == again.next(), "the generator advances by the draws made")
    }

    /// A block at rate 0 inside training computes what it computes outside, to the bit.
    @Test func aBlockAtRateZeroIsUnchanged() {
        var init_ = RandomGenerator(seed: 1)
        let block = TransformerBlock(8, heads: 2, eps: 1e-6, rng: &init_)
        let x = Init.normal([3, 5, 8], std: 1, rng: &init_)
        let plain = block(x)
        var rng = RandomGenerator(seed: 2)
        let inside = StochasticDepth.training(rng: &rng) { block(x) }
        #expect(plain.scalars == inside.scalars)
        block.dropPathRate = 0.5
        var rng2 = RandomGenerator(seed: 2)
        let dropped = StochasticDepth.training(rng: &rng2) { block(x) }
        #expect(dropped.scalars != plain.scalars)
        #expect(block(x).scalars == plain.scalars, "outside training the rate does nothing")
    }
}
