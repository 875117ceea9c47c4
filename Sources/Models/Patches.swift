import TensorCore

/// Pixel ⇄ patch re-indexing and the norm-pixel target (docs/methods/common.md#patchify-order and
/// docs/methods/common.md#b9-norm-pixel-targets).
public enum Patches {
    /// patchify(img, q): (B, 3, H, W) → (B, (H/q)·(W/q), q·q·3), blocks in raster order, each
    /// flattened row-in-block, column-in-block, channel (channel fastest).
    public static func patchifyIndex(imageSize: Int, patch q: Int, channels: Int = 3) -> RowIndex {
        let g = imageSize / q
        var idx = [Int32](repeating: 0, count: channels * imageSize * imageSize)
        var o = 0
        for gy in 0..<g { for gx in 0..<g { for py in 0..<q { for px in 0..<q { for c in 0..<channels {
            idx[o] = Int32((c * imageSize + gy * q + py) * imageSize + gx * q + px)
            o += 1
        } } } } }
        return RowIndex(idx, sourceRows: idx.count)
    }

    /// The inverse permutation of `index` (for unpatchify and window reverse).
    public static func inverse(_ index: RowIndex) -> RowIndex {
        var inv = [Int32](repeating: -1, count: index.sourceRows)
        for (o, s) in index.indices.enumerated() where s >= 0 { inv[Int(s)] = Int32(o) }
        return RowIndex(inv, sourceRows: index.count)
    }

    public static func patchify(_ images: Tensor, patch q: Int) -> Tensor {
        let (B, C, S) = (images.shape[0], images.shape[1], images.shape[2])
        let g = S / q
        return images.gatherRows(patchifyIndex(imageSize: S, patch: q, channels: C), rowLength: 1, batch: B,
                                 shape: [B, g * g, q * q * C])
    }

    public static func unpatchify(_ patches: Tensor, patch q: Int, imageSize: Int, channels: Int = 3) -> Tensor {
        let B = patches.shape[0]
        return patches.gatherRows(inverse(patchifyIndex(imageSize: imageSize, patch: q, channels: channels)),
                                  rowLength: 1, batch: B, shape: [B, channels, imageSize, imageSize])
    }

    /// Per-patch statistics (mean, √(unbiased var + 1e-6)) of (…, P) rows.
    public static func statistics(_ patches: Tensor) -> (mean: [Float], std: [Float]) {
        let P = patches.dim(-1), rows = patches.count / P
        var mean = [Float](repeating: 0, count: rows), std = mean
        for r in 0..<rows {
            let row = patches.pointer + r * P
            var s = 0.0
            for j in 0..<P { s += Double(row[j]) }
            let m = s / Double(P)
            var v = 0.0
            for j in 0..<P { let d = Double(row[j]) - m; v += d * d }
            mean[r] = Float(m)
            std[r] = Float((v / Double(max(P - 1, 1)) + 1e-6).squareRoot())
        }
        return (mean, std)
    }

    /// t̂ = (t − mean(t)) / √(var(t) + 1e-6) per patch, var unbiased (B9). A constant.
    public static func normalizedTarget(_ patches: Tensor) -> Tensor {
        let (mean, std) = statistics(patches)
        let P = patches.dim(-1)
        let out = Tensor(uninitialized: patches.shape)
        for r in 0..<mean.count {
            for j in 0..<P { out.pointer[r * P + j] = (patches.pointer[r * P + j] - mean[r]) / std[r] }
        }
        return out
    }

    /// Undoes `normalizedTarget` on predictions with the given per-patch statistics.
    public static func denormalize(_ pred: Tensor, mean: [Float], std: [Float]) -> Tensor {
        let P = pred.dim(-1)
        let out = Tensor(uninitialized: pred.shape)
        for r in 0..<mean.count {
            for j in 0..<P { out.pointer[r * P + j] = pred.pointer[r * P + j] * std[r] + mean[r] }
        }
        return out
    }
}
