import Foundation
import Testing
import TestSupport
@testable import TensorCore

@Suite("Elementwise, broadcasting and reductions") struct ElementwiseTests {
    /// Naive broadcasting twin: index arithmetic per element.
    func naiveBinary(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> [Float] {
        let out = Broadcast.shape(a.shape, b.shape)
        let n = out.reduce(1, *)
        func offset(_ flat: Int, _ shape: [Int]) -> Int {
            var rem = flat, off = 0, step = 1
            var idx = [Int](repeating: 0, count: out.count)
            for d in stride(from: out.count - 1, through: 0, by: -1) { idx[d] = rem % out[d]; rem /= out[d] }
            for d in stride(from: shape.count - 1, through: 0, by: -1) {
                let o = d + out.count - shape.count
                off += (shape[d] == 1 ? 0 : idx[o]) * step
                step *= shape[d]
            }
            return off
        }
        return (0..<n).map { f(a.pointer[offset($0, a.shape)], b.pointer[offset($0, b.shape)]) }
    }

    @Test(arguments: [([2, 3, 4], [2, 3, 4]), ([2, 3, 4], [4]), ([2, 3, 4], [3, 1]), ([1, 3, 1], [2, 1, 5]), ([5], [1])])
    func broadcastOps(sa: [Int], sb: [Int]) {
        let a = randomTensor(sa, seed: 1), b = randomTensor(sb, seed: 2)
        #expect(maxAbsDiff((a + b).scalars, naiveBinary(a, b, +)) == 0)
        #expect(maxAbsDiff((a - b).scalars, naiveBinary(a, b, -)) == 0)
        #expect(maxAbsDiff((a * b).scalars, naiveBinary(a, b, *)) == 0)
        checkGradients([a, b]) { a + b }
        checkGradients([a, b]) { a - b }
        checkGradients([a, b]) { a * b }
    }

    @Test func scalarOpsReluReshape() {
        let a = randomTensor([3, 7], seed: 3)
        #expect((a * 2 + 1).scalars == a.scalars.map { $0 * 2 + 1 })
        #expect(a.relu().scalars == a.scalars.map { max($0, 0) })
        checkGradients([a]) { (a * 3 + 0.5).reshaped([7, 3]) }
        // Keep inputs away from relu's kink at 0.
        let b = Tensor(a.scalars.map { $0 > 0 ? $0 + 0.1 : $0 - 0.1 }, shape: [3, 7])
        checkGradients([b]) { b.relu() }
        #expect(a.reshaped([-1, 3]).shape == [7, 3])
    }

    @Test func sumAndMean() {
        let a = randomTensor([2, 3, 5], seed: 4)
        let s = a.sum(axes: [1])
        #expect(s.shape == [2, 5])
        for i in 0..<2 {
            for k in 0..<5 {
                let ref = (0..<3).map { a.pointer[i * 15 + $0 * 5 + k] }.reduce(0, +)
                #expect(abs(s.pointer[i * 5 + k] - ref) < 1e-5)
            }
        }
        #expect(abs(a.sum().item - a.scalars.reduce(0, +)) < 1e-4)
        #expect(abs(a.mean().item - a.scalars.reduce(0, +) / 30) < 1e-5)
        #expect(a.mean(axes: [0, 2], keepDims: true).shape == [1, 3, 1])
        checkGradients([a]) { a.sum(axes: [1]) }
        checkGradients([a]) { a.mean(axes: [0, 2], keepDims: true) }
        checkGradients([a]) { a.mean() }
        checkGradients([a]) { a.sum(axes: [-1]) }
    }
}
