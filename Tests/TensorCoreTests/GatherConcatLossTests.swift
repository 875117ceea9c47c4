import Foundation
import Testing
import TestSupport
@testable import TensorCore

@Suite("Row gather and scatter, concat and split, masked losses") struct GatherConcatLossTests {
    @Test func gatherRowsWithZeroRowsAndRepeats() {
        let x = randomTensor([5, 3], seed: 1)
        let index = RowIndex([4, -1, 0, 4, 2] as [Int], sourceRows: 5)
        #expect(!index.isInjective)
        let y = x.gatherRows(index, shape: [5, 3])
        var expected: [Float] = []
        for r in [4, -1, 0, 4, 2] {
            expected += r < 0 ? [0, 0, 0] : Array(x.scalars[(r * 3)..<(r * 3 + 3)])
        }
        #expect(y.scalars == expected)
        checkGradients([x]) { x.gatherRows(index, shape: [5, 3]) }
    }

    @Test func scatterIsTheAdjointOfGather() {
        // ⟨gather(x), y⟩ = ⟨x, scatter(y)⟩ for any x, y.
        let index = RowIndex([3, 0, -1, 6, 1] as [Int], sourceRows: 7)
        #expect(index.isInjective)
        let x = randomTensor([7, 4], seed: 2), y = randomTensor([5, 4], seed: 3)
        let gx = x.gatherRows(index, shape: [5, 4]), sy = y.scatterRows(index, shape: [7, 4])
        let lhs = zip(gx.scalars, y.scalars).map { Double($0 * $1) }.reduce(0, +)
        let rhs = zip(x.scalars, sy.scalars).map { Double($0 * $1) }.reduce(0, +)
        #expect(abs(lhs - rhs) < 1e-5)
        checkGradients([y]) { y.scatterRows(index, shape: [7, 4]) }
        withThreadCounts { _ in checkGradients([x]) { x.gatherRows(index, shape: [5, 4]) } }
    }

    @Test func elementLevelGatherPermutesLikeATranspose() {
        // rowLength 1 turns the gather into an arbitrary element permutation (NCHW → NHWC).
        let (C, H, W) = (3, 2, 4)
        let x = randomTensor([1, C, H, W], seed: 4)
        var idx: [Int] = []
        for y in 0..<H { for xx in 0..<W { for c in 0..<C { idx.append((c * H + y) * W + xx) } } }
        let t = x.gatherRows(RowIndex(idx, sourceRows: x.count), rowLength: 1, shape: [1, H, W, C])
        #expect(t.pointer[((0 * W) + 1) * C + 2] == x.pointer[(2 * H + 0) * W + 1])
        checkGradients([x]) { x.gatherRows(RowIndex(idx, sourceRows: x.count), rowLength: 1, shape: [1, H, W, C]) }
    }

    @Test func concatAndSplit() {
        let a = randomTensor([2, 3, 4], seed: 5), b = randomTensor([2, 1, 4], seed: 6), c = randomTensor([2, 2, 4], seed: 7)
        let j = Tensor.concat([a, b, c], axis: 1)
        #expect(j.shape == [2, 6, 4])
        let parts = j.split([3, 1, 2], axis: 1)
        #expect(parts[0].scalars == a.scalars && parts[1].scalars == b.scalars && parts[2].scalars == c.scalars)
        checkGradients([a, b, c]) { Tensor.concat([a, b, c], axis: 1) }
        checkGradients([a]) { Tensor.concat(a.split([1, 3], axis: -1).reversed(), axis: -1) }
        checkGradients([a]) { a.slice(axis: 0, start: 1, length: 1) }
    }

    @Test func maskedMSEMatchesDefinition() {
        let pred = randomTensor([2, 5, 3], seed: 8), target = randomTensor([2, 5, 3], seed: 9)
        let mask = Tensor([1, 0, 1, 1, 0, 0, 0, 1, 0, 1], shape: [2, 5])
        var num = 0.0
        for r in 0..<10 where mask.pointer[r] == 1 {
            num += (0..<3).map { Double(pred.pointer[r * 3 + $0] - target.pointer[r * 3 + $0]) }.map { $0 * $0 }.reduce(0, +) / 3
        }
        #expect(abs(Double(Tensor.maskedMSE(pred, target: target, mask: mask).item) - num / 5) < 1e-6)
        checkGradients([pred]) { Tensor.maskedMSE(pred, target: target, mask: mask) }
    }

    @Test func maskedL1MatchesSimMIMDefinition() {
        let pred = randomTensor([1, 3, 2, 2], seed: 10), target = randomTensor([1, 3, 2, 2], seed: 11)
        let pixel: [Float] = [1, 0, 1, 1]
        let mask = Tensor((0..<3).flatMap { _ in pixel }, shape: [1, 3, 2, 2])
        var num = 0.0
        for i in 0..<12 { num += Double(abs(pred.pointer[i] - target.pointer[i]) * mask.pointer[i]) }
        let expected = num / (3 + 1e-5) / 3
        #expect(abs(Double(Tensor.maskedL1(pred, target: target, mask: mask, channels: 3).item) - expected) < 1e-6)
        checkGradients([pred], eps: 1e-3) { Tensor.maskedL1(pred, target: target, mask: mask, channels: 3) }
    }

    /// Soft-target cross-entropy against its definition in Double (log-sum-exp per row), with
    /// smoothed, mixed and one-hot rows, logits large enough that a naive exp would overflow;
    /// the gradient against central differences.
    @Test func softTargetCrossEntropyMatchesDefinition() {
        let logits = randomTensor([3, 4], seed: 12, scale: 3)
        logits.pointer[0] = 95  // exp(95) overflows Float
        let targets: [Float] = [0.925, 0.025, 0.025, 0.025, 0.3, 0.7, 0, 0, 0, 0, 0, 1]
        var expected = 0.0
        for b in 0..<3 {
            let row = (0..<4).map { Double(logits.pointer[b * 4 + $0]) }
            let m = row.max()!, lse = m + log(row.map { exp($0 - m) }.reduce(0, +))
            for c in 0..<4 { expected -= Double(targets[b * 4 + c]) * (row[c] - lse) }
        }
        expected /= 3
        let got = Double(Tensor.softTargetCrossEntropy(logits, targets: targets).item)
        #expect(abs(got - expected) <= 1e-5 * max(1, abs(expected)), "\(got) vs \(expected)")
        logits.pointer[0] = 2
        checkGradients([logits], eps: 1e-2) { Tensor.softTargetCrossEntropy(logits, targets: targets) }
    }
}

@Suite("Batched row maps") struct BatchedGatherTests {
    @Test func oneMapServesEveryBatchEntry() {
        let index = RowIndex([2, 0, -1, 2] as [Int], sourceRows: 3)
        let x = randomTensor([4, 3, 5], seed: 12)
        let y = x.gatherRows(index, batch: 4, shape: [4, 4, 5])
        for b in 0..<4 {
            let xb = x.slice(axis: 0, start: b, length: 1).reshaped([3, 5])
            let yb = xb.gatherRows(index, shape: [4, 5])
            #expect(y.slice(axis: 0, start: b, length: 1).scalars == yb.scalars)
        }
        withThreadCounts { _ in
            checkGradients([x]) { x.gatherRows(index, batch: 4, shape: [4, 4, 5]) }
            let z = randomTensor([4, 4, 5], seed: 13)
            checkGradients([z]) { z.scatterRows(index, batch: 4, shape: [4, 3, 5]) }
        }
    }
}
