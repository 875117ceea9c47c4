import TensorCore

/// A batch's mask, decided outside the model so tests and fixtures can supply it.
public enum MaskSpec: Sendable {
    /// Per-sample noise-sort masking (B7, docs/methods/common.md#b7-noise-sort-masking):
    /// noise (B, L); the `keep` lowest stay visible.
    case noise(Tensor, keep: Int)
    /// Unit mask (B, Uh, Uw), 1 = masked, at mask-unit resolution.
    case units(Tensor)
    /// UM-MAE: primary unit mask (B, U, U), exactly one 0 per 2×2 group; secondary (B, U, U),
    /// 1 at the kept units the encoder sees as the mask token.
    case uniform(primary: Tensor, secondary: Tensor)
}

/// Mask sampling for each method, from the job's seeded generator.
public enum Masking {
    /// Noise for B7 with `keep = ⌊L·(1 − r)⌋`.
    public static func noise(batch: Int, tokens: Int, ratio: Float, rng: inout RandomGenerator) -> MaskSpec {
        let t = Tensor(uninitialized: [batch, tokens])
        for i in 0..<t.count { t.pointer[i] = rng.uniform() }
        return .noise(t, keep: Int(Float(tokens) * (1 - ratio)))
    }

    /// SimMIM: per sample, mask the first ⌈units·r⌉ entries of a random permutation.
    public static func randomUnits(batch: Int, unitGrid: Int, ratio: Float, rng: inout RandomGenerator) -> MaskSpec {
        let n = unitGrid * unitGrid
        let count = Int((Float(n) * ratio).rounded(.up))
        let t = Tensor(zeros: [batch, unitGrid, unitGrid])
        for b in 0..<batch {
            for u in rng.permutation(n).prefix(count) { t.pointer[b * n + u] = 1 }
        }
        return .units(t)
    }

    /// argsort per row, ascending; ties by index (stable) so results never depend on sort internals.
    public static func argsortRows(_ noise: Tensor) -> [[Int]] {
        let (B, L) = (noise.shape[0], noise.shape[1])
        return (0..<B).map { b in
            let row = noise.pointer + b * L
            return (0..<L).sorted { row[$0] != row[$1] ? row[$0] < row[$1] : $0 < $1 }
        }
    }

    /// Nearest upsampling of a (B, U, U) unit mask to (B, U·f, U·f).
    public static func upsample(_ units: Tensor, factor f: Int) -> Tensor {
        let (B, U) = (units.shape[0], units.shape[1])
        let G = U * f
        let out = Tensor(uninitialized: [B, G, G])
        for b in 0..<B { for y in 0..<G { for x in 0..<G {
            out.pointer[(b * G + y) * G + x] = units.pointer[(b * U + y / f) * U + x / f]
        } } }
        return out
    }
}
