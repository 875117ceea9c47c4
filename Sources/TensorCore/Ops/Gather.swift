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
    /// (default: the last dimension). The result has `shape`, whose element count must be
    /// `index.count · rowLength`.
    public func gatherRows(_ index: RowIndex, rowLength: Int? = nil, shape outShape: [Int]) -> Tensor {
        let r = rowLength ?? dim(-1)
        precondition(count == index.sourceRows * r, "gatherRows: \(shape) is not \(index.sourceRows) rows of \(r)")
        precondition(outShape.reduce(1, *) == index.count * r, "gatherRows: output \(outShape) is not \(index.count) rows of \(r)")
        let out = Tensor(uninitialized: outShape)
        copyRows(from: pointer, to: out.pointer, index.indices, r)
        return out.recording("gatherRows", [self]) { g in
            self.accumulateGrad { dx, beta in
                if beta == 0 { dx.update(repeating: 0, count: self.count) }
                addRowsBack(g.pointer, into: dx, index, r)
            }
        }
    }

    /// The adjoint of `gatherRows`: out row `index[i]` += row i (rows with −1 are dropped);
    /// rows no index reaches are zero. The result has `shape` with `index.sourceRows` rows.
    public func scatterRows(_ index: RowIndex, rowLength: Int? = nil, shape outShape: [Int]) -> Tensor {
        let r = rowLength ?? dim(-1)
        precondition(count == index.count * r, "scatterRows: \(shape) is not \(index.count) rows of \(r)")
        precondition(outShape.reduce(1, *) == index.sourceRows * r, "scatterRows: output \(outShape) is not \(index.sourceRows) rows of \(r)")
        let out = Tensor(zeros: outShape)
        addRowsBack(pointer, into: out.pointer, index, r)
        return out.recording("scatterRows", [self]) { g in
            self.accumulateGrad { dx, beta in
                if beta == 0 {
                    copyRows(from: g.pointer, to: dx, index.indices, r)
                } else {
                    let tmp = Tensor(uninitialized: self.shape)
                    copyRows(from: g.pointer, to: tmp.pointer, index.indices, r)
                    for i in 0..<self.count { dx[i] += tmp.pointer[i] }
                }
            }
        }
    }
}

/// dst row o = src row idx[o] (zeros for −1).
func copyRows(from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, _ idx: [Int32], _ r: Int) {
    idx.withUnsafeBufferPointer { ip in
        parallelFor(ip.count, minPerThread: max(1, 8192 / max(r, 1))) { range in
            for o in range {
                let s = Int(ip[o])
                if s < 0 { (dst + o * r).update(repeating: 0, count: r) } else { (dst + o * r).update(from: src + s * r, count: r) }
            }
        }
    }
}

/// dst row idx[o] += src row o, parallel when no two rows collide.
func addRowsBack(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, _ index: RowIndex, _ r: Int) {
    index.indices.withUnsafeBufferPointer { ip in
        let body: (Range<Int>) -> Void = { range in
            for o in range {
                let s = Int(ip[o])
                if s < 0 { continue }
                let d = dst + s * r, g = src + o * r
                for j in 0..<r { d[j] += g[j] }
            }
        }
        if index.isInjective {
            parallelFor(ip.count, minPerThread: max(1, 8192 / max(r, 1)), body)
        } else {
            body(0..<ip.count)
        }
    }
}
