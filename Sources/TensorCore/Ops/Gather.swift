/// Row gather and scatter by a precomputed index map: the one primitive behind masking,
/// MAE's unshuffle, Swin's window partition / reverse and roll, patch merging, pixel shuffle
/// and MixMAE's mixing. Build the `RowIndex` once per shape and mask, reuse it every step.
public final class RowIndex: Sendable {
    /// `indices[o]` is the source row of output row o, or −1 for a zero row.
    public let indices: [Int32]
    /// Number of rows in the source (gather) or destination (scatter).
    public let sourceRows: Int
    /// No source row is used twice (so the adjoint can run in parallel).
    public let isInjective: Bool

    public init(_ indices: [Int32], sourceRows: Int) {
        var seen = [Bool](repeating: false, count: sourceRows)
        var injective = true
        for i in indices {
            precondition(i >= -1 && Int(i) < sourceRows, "row index \(i) outside 0..<\(sourceRows)")
            if i >= 0 {
                if seen[Int(i)] { injective = false }
                seen[Int(i)] = true
            }
        }
        self.indices = indices
        self.sourceRows = sourceRows
        self.isInjective = injective
    }

    public convenience init(_ indices: [Int], sourceRows: Int) {
        self.init(indices.map { Int32($0) }, sourceRows: sourceRows)
    }

    public var count: Int { indices.count }
}

extension Tensor {
    /// out row o = source row `index[o]` (zeros for −1), with rows of `rowLength` floats
    /// (default: the last dimension). With `batch` > 1 the source is `batch` blocks of
    /// `index.sourceRows` rows and the same per-sample index applies to every block, so one
    /// map serves any batch size. The result has `shape` (`batch · index.count · rowLength`
    /// elements).
    public func gatherRows(_ index: RowIndex, rowLength: Int? = nil, batch: Int = 1, shape outShape: [Int]) -> Tensor {
        Profiler.measure(.memory, .forward) {
            let r = rowLength ?? dim(-1)
            precondition(count == batch * index.sourceRows * r,
                         "gatherRows: \(shape) is not \(batch) × \(index.sourceRows) rows of \(r)")
            precondition(outShape.reduce(1, *) == batch * index.count * r,
                         "gatherRows: output \(outShape) is not \(batch) × \(index.count) rows of \(r)")
            let out = Tensor(uninitialized: outShape)
            copyRows(from: pointer, to: out.pointer, index.indices, r, batch: batch, sourceRows: index.sourceRows)
            let v = vertex  // the backward reads no values of self
            return out.recording("gatherRows", .memory, [self]) { g in
                v.accumulateGrad { dx, beta in
                    if beta == 0 { dx.update(repeating: 0, count: v.count) }
                    addRowsBack(g.pointer, into: dx, index, r, batch: batch)
                }
            }
        }
    }

    /// The adjoint of `gatherRows`: out row `index[i]` += row i (rows with −1 are dropped);
    /// rows no index reaches are zero. Batched like `gatherRows`.
    public func scatterRows(_ index: RowIndex, rowLength: Int? = nil, batch: Int = 1, shape outShape: [Int]) -> Tensor {
        Profiler.measure(.memory, .forward) {
            let r = rowLength ?? dim(-1)
            precondition(count == batch * index.count * r, "scatterRows: \(shape) is not \(batch) × \(index.count) rows of \(r)")
            precondition(outShape.reduce(1, *) == batch * index.sourceRows * r,
                         "scatterRows: output \(outShape) is not \(batch) × \(index.sourceRows) rows of \(r)")
            let out = Tensor(zeros: outShape)
            addRowsBack(pointer, into: out.pointer, index, r, batch: batch)
            let v = vertex  // the backward reads no values of self
            return out.recording("scatterRows", .memory, [self]) { g in
                v.accumulateGrad { dx, beta in
                    let tmp = beta == 0 ? nil : Tensor(uninitialized: v.shape)
                    copyRows(from: g.pointer, to: tmp?.pointer ?? dx, index.indices, r, batch: batch, sourceRows: index.sourceRows)
                    if let tmp { for i in 0..<v.count { dx[i] += tmp.pointer[i] } }
                }
            }
        }
    }
}

/// dst row o = src row idx[o] (zeros for −1) for every block of the batch, in parallel over
/// samples (or over rows when there is one sample).
func copyRows(from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, _ idx: [Int32], _ r: Int,
              batch: Int = 1, sourceRows: Int = 0) {
    let n = idx.count
    idx.withUnsafeBufferPointer { ip in
        let body = { (b: Int, rows: Range<Int>) in
            let s0 = src + b * sourceRows * r, d0 = dst + b * n * r
            for o in rows {
                let s = Int(ip[o])
                if s < 0 { (d0 + o * r).update(repeating: 0, count: r) } else { (d0 + o * r).update(from: s0 + s * r, count: r) }
            }
        }
        if batch == 1 {
            parallelFor(n, minPerThread: max(1, 16384 / max(r, 1))) { body(0, $0) }
        } else {
            parallelFor(batch) { bs in for b in bs { body(b, 0..<n) } }
        }
    }
}

/// dst row idx[o] += src row o for every block; rows of one sample run in parallel only when
/// no two of them land on the same destination.
func addRowsBack(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, _ index: RowIndex, _ r: Int,
                 batch: Int = 1) {
    let n = index.count, sourceRows = index.sourceRows
    index.indices.withUnsafeBufferPointer { ip in
        let body = { (b: Int, rows: Range<Int>) in
            let g0 = src + b * n * r, d0 = dst + b * sourceRows * r
            for o in rows {
                let s = Int(ip[o])
                if s < 0 { continue }
                let d = d0 + s * r, g = g0 + o * r
                for j in 0..<r { d[j] += g[j] }
            }
        }
        if batch == 1 {
            if index.isInjective {
                parallelFor(n, minPerThread: max(1, 16384 / max(r, 1))) { body(0, $0) }
            } else {
                body(0, 0..<n)
            }
        } else {
            parallelFor(batch) { bs in for b in bs { body(b, 0..<n) } }
        }
    }
}
