/// NumPy-style broadcasting: shapes align on the right; a dimension of 1 stretches.
enum Broadcast {
    static func shape(_ a: [Int], _ b: [Int]) -> [Int] {
        let rank = max(a.count, b.count)
        var out = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            precondition(da == db || da == 1 || db == 1, "shapes \(a) and \(b) do not broadcast")
            out[i] = max(da, db)
        }
        return out
    }

    /// Element strides of `shape` seen through `out` (0 on stretched or missing dimensions).
    static func strides(of shape: [Int], in out: [Int]) -> [Int] {
        var strides = [Int](repeating: 0, count: out.count)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            let o = i + out.count - shape.count
            strides[o] = shape[i] == 1 ? 0 : s
            s *= shape[i]
        }
        return strides
    }

    /// Calls `body(outOffset, offsets, runLength, innerStrides)` for every innermost run of
    /// `out`, where `offsets[k]` is operand k's element offset at the run's start.
    static func forEachRun(_ out: [Int], _ operandStrides: [[Int]],
                           _ body: (Int, [Int], Int, [Int]) -> Void) {
        let rank = out.count
        if rank == 0 { body(0, operandStrides.map { _ in 0 }, 1, operandStrides.map { _ in 0 }); return }
        let inner = out[rank - 1]
        let innerStrides = operandStrides.map { $0[rank - 1] }
        let outer = out.dropLast().reduce(1, *)
        var index = [Int](repeating: 0, count: rank - 1)
        var offsets = [Int](repeating: 0, count: operandStrides.count)
        for run in 0..<outer {
            body(run * inner, offsets, inner, innerStrides)
            // Increment the multi-index, updating offsets incrementally.
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                for k in 0..<offsets.count { offsets[k] += operandStrides[k][d] }
                if index[d] < out[d] { break }
                for k in 0..<offsets.count { offsets[k] -= operandStrides[k][d] * out[d] }
                index[d] = 0
                d -= 1
            }
        }
    }

    /// Sums `src` (shape `from`) into `dst` (shape `to`, which broadcasts to `from`), adding to
    /// `dst` when `beta` is 1 and overwriting when it is 0.
    static func reduce(_ src: UnsafePointer<Float>, from: [Int], into dst: UnsafeMutablePointer<Float>,
                       to: [Int], beta: Float) {
        let dstCount = to.reduce(1, *)
        if beta == 0 { dst.update(repeating: 0, count: dstCount) }
        if from == to {
            for i in 0..<dstCount { dst[i] += src[i] }
            return
        }
        let dstStrides = strides(of: to, in: from)
        forEachRun(from, [dstStrides]) { o, offs, n, inner in
            let d = dst + offs[0]
            if inner[0] == 0 {
                d[0] += simdSum(src + o, n)
            } else {
                for i in 0..<n { d[i] += src[o + i] }
            }
        }
    }
}
