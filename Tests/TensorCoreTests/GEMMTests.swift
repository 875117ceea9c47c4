import Testing
import TestSupport
@testable import TensorCore

@Suite("GEMM and matrix products") struct GEMMTests {
    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func gemmMatchesNaiveTwin(transA: Bool, transB: Bool) {
        // Odd sizes; the large cases exceed the split threshold so both threads get work, and
        // the last one's blocks are large enough for oneDNN's sgemm (`SGEMMKernel`) on 1 or 2
        // threads. Each runs in the default library and in each one forced (the benchmark's way).
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 1, 13), (131, 67, 129), (61, 263, 97), (521, 131, 161)] {
            let a = randomTensor(transA ? [k, m] : [m, k], seed: 1)
            let b = randomTensor(transB ? [n, k] : [k, n], seed: 2)
            let c0 = randomTensor([m, n], seed: 3)
            let expected = c0.copy()
            naiveGemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a.pointer, lda: transA ? m : k,
                      b: b.pointer, ldb: transB ? k : n, beta: 1, c: expected.pointer, ldc: n)
            withThreadCounts { _ in
                for kernel in [nil] + SGEMMKernel.allCases.map(Optional.some) {
                    let c = c0.copy()
                    gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a.pointer, lda: transA ? m : k,
                         b: b.pointer, ldb: transB ? k : n, beta: 1, c: c.pointer, ldc: n, kernel: kernel)
                    #expect(maxAbsDiff(c.scalars, expected.scalars) < 1e-4, "\(m)×\(n)×\(k) in \(kernel?.rawValue ?? "the default")")
                }
            }
        }
    }

    /// The weight gradient of a layer widening 4× (Aᵀ·B, M ≥ 4N, long K) runs as Cᵀ = Bᵀ·A and is
    /// transposed into C: against a float64 twin within fp32's summation bound, with beta 0 and
    /// 1, alpha ½, C inside a wider matrix (ldc > N), on 1 and 2 threads, in every library.
    @Test func aWideningLayersWeightGradientRunsTransposedAndMatches() {
        let (m, n, k, ldc) = (521, 130, 1031, 133)
        let a = randomTensor([k, m], seed: 11), b = randomTensor([k, n], seed: 12)
        let c0 = randomTensor([m, ldc], seed: 13)
        for beta: Float in [0, 1] {
            var want = [Double](repeating: 0, count: m * ldc), bound = want
            for i in 0..<m {
                for j in 0..<ldc {
                    let old = Double(c0.pointer[i * ldc + j])
                    guard j < n else { want[i * ldc + j] = old; continue }  // outside C: untouched
                    var sum = 0.0, magnitude = 0.0
                    for p in 0..<k {
                        let term = Double(a.pointer[p * m + i]) * Double(b.pointer[p * n + j])
                        sum += term
                        magnitude += abs(term)
                    }
                    want[i * ldc + j] = 0.5 * sum + Double(beta) * old
                    // (k + 2) roundings of at most 2⁻²⁴ each, on the magnitudes summed.
                    bound[i * ldc + j] = Double(k + 2) * 0x1p-24 * (0.5 * magnitude + Double(beta) * abs(old))
                }
            }
            withThreadCounts { threads in
                for kernel in [nil] + SGEMMKernel.allCases.map(Optional.some) {
                    let c = c0.copy()
                    gemm(transA: true, transB: false, m: m, n: n, k: k, alpha: 0.5, a: a.pointer, lda: m, b: b.pointer, ldb: n,
                         beta: beta, c: c.pointer, ldc: ldc, kernel: kernel)
                    let worst = (0..<(m * ldc)).map { abs(Double(c.pointer[$0]) - want[$0]) - bound[$0] }.max()!
                    #expect(worst <= 0, "beta \(beta) threads \(threads) \(kernel?.rawValue ?? "default"): \(worst) over the bound")
                }
            }
        }
    }

    /// A bias is written by each block into its own rows or columns of C before its product is
    /// summed onto it: both split directions, one and two threads, against the naive twin.
    @Test func gemmWithBiasMatchesNaiveTwinPlusBias() {
        for (m, n, k) in [(3, 5, 7), (263, 61, 97), (61, 263, 97)] {
            let a = randomTensor([m, k], seed: 7), b = randomTensor([n, k], seed: 8), bias = randomTensor([n], seed: 9)
            let expected = Tensor(zeros: [m, n])
            for i in 0..<m { for j in 0..<n { expected.pointer[i * n + j] = bias.pointer[j] } }
            naiveGemm(transA: false, transB: true, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: k,
                      beta: 1, c: expected.pointer, ldc: n)
            withThreadCounts { _ in
                let c = randomTensor([m, n], seed: 10)  // whatever C held before does not count
                gemm(transA: false, transB: true, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: k,
                     bias: bias.pointer, c: c.pointer, ldc: n)
                #expect(maxAbsDiff(c.scalars, expected.scalars) < 1e-4, "\(m)×\(n)×\(k)")
            }
        }
    }

    /// A linear layer's forward and backward, recorded: x·Wᵀ, dy·W and dyᵀ·x, once each.
    @Test func gemmShapesRecordsEachProductOfALinearLayer() {
        let x = randomTensor([6, 5], seed: 11), w = randomTensor([7, 5], seed: 12)
        x.requiresGrad = true
        w.requiresGrad = true
        let shapes = GEMMShapes.record { x.linear(weight: w).sum().backward() }
        #expect(shapes == [GEMMShapes.Shape(transA: false, transB: true, m: 6, n: 7, k: 5): 1,
                           GEMMShapes.Shape(transA: false, transB: false, m: 6, n: 5, k: 7): 1,
                           GEMMShapes.Shape(transA: true, transB: false, m: 7, n: 5, k: 6): 1])
        #expect(GEMMShapes.record {}.isEmpty)
    }

    /// How a kernel splits its work can change the order of its sums, so tests that vary the
    /// thread count must not change it under work running beside them (a training job whose
    /// losses another test compares bit for bit).
    @Test func aThreadCountSetForOneTaskLeavesOtherTasksAlone() async {
        let base = ComputeThreads.count
        let (inside, beside) = ComputeThreads.with(base + 1) { (ComputeThreads.count, Task.detached { ComputeThreads.count }) }
        #expect(inside == base + 1)
        #expect(await beside.value == base)
        #expect(ComputeThreads.count == base)
    }

    @Test func gemmCountsFLOPs() {
        let a = randomTensor([4, 6], seed: 1), b = randomTensor([6, 5], seed: 2), c = Tensor(zeros: [4, 5])
        let before = FLOPCounter.value
        gemm(transA: false, transB: false, m: 4, n: 5, k: 6, a: a.pointer, lda: 6, b: b.pointer, ldb: 5, c: c.pointer, ldc: 5)
        #expect(FLOPCounter.value - before >= 2 * 4 * 5 * 6)
    }

    @Test func linearForwardAndBackward() {
        let x = randomTensor([2, 3, 5], seed: 4), w = randomTensor([7, 5], seed: 5), b = randomTensor([7], seed: 6)
        let y = x.linear(weight: w, bias: b)
        #expect(y.shape == [2, 3, 7])
        for r in 0..<6 {
            for o in 0..<7 {
                var s = Double(b.pointer[o])
                for i in 0..<5 { s += Double(x.pointer[r * 5 + i]) * Double(w.pointer[o * 5 + i]) }
                #expect(abs(Float(s) - y.pointer[r * 7 + o]) < 1e-5)
            }
        }
        checkGradients([x, w, b]) { x.linear(weight: w, bias: b) }
        checkGradients([x, w]) { x.linear(weight: w) }
    }

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func matmulAllTransposes(transA: Bool, transB: Bool) {
        let (m, k, n) = (3, 4, 5)
        let a = randomTensor(transA ? [k, m] : [m, k], seed: 7)
        let b = randomTensor(transB ? [n, k] : [k, n], seed: 8)
        let c = Tensor.matmul(a, b, transposeA: transA, transposeB: transB)
        #expect(c.shape == [m, n])
        let ref = Tensor(zeros: [m, n])
        naiveGemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.pointer, lda: a.shape[1],
                  b: b.pointer, ldb: b.shape[1], c: ref.pointer, ldc: n)
        #expect(maxAbsDiff(c.scalars, ref.scalars) < 1e-5)
        checkGradients([a, b]) { Tensor.matmul(a, b, transposeA: transA, transposeB: transB) }
    }

    @Test(arguments: [(false, false), (true, true)])
    func batchedMatmul(transA: Bool, transB: Bool) {
        let a = randomTensor(transA ? [2, 4, 3] : [2, 3, 4], seed: 9)
        let b = randomTensor(transB ? [2, 5, 4] : [2, 4, 5], seed: 10)
        let shared = randomTensor(transB ? [5, 4] : [4, 5], seed: 11)
        let c = Tensor.matmul(a, b, transposeA: transA, transposeB: transB)
        #expect(c.shape == [2, 3, 5])
        for i in 0..<2 {
            let ai = a.slice(axis: 0, start: i, length: 1).reshaped(Array(a.shape.dropFirst()))
            let bi = b.slice(axis: 0, start: i, length: 1).reshaped(Array(b.shape.dropFirst()))
            let ci = Tensor.matmul(ai, bi, transposeA: transA, transposeB: transB)
            #expect(maxAbsDiff(ci.scalars, Array(c.scalars[(i * 15)..<((i + 1) * 15)])) < 1e-5)
        }
        checkGradients([a, b]) { Tensor.matmul(a, b, transposeA: transA, transposeB: transB) }
        checkGradients([a, shared]) { Tensor.matmul(a, shared, transposeA: transA, transposeB: transB) }
    }
}
