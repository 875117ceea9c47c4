import TensorCore

/// UM-MAE's masks (docs/methods/ummae.md#uniform-sampling-and-secondary-masking) and the
/// compacted encoder input they define.
///
/// Legend: B batch, U unit-grid side (even), Ug = U/2 group-grid side, K tokens per unit side,
/// G = U·K token-grid side, Gc = G/2 = Ug·K compacted-grid side.

public enum UniformMasking {
    /// Primary: in every 2×2 group of units exactly one kept unit, drawn uniformly and
    /// independently per group, in place of the reference's balanced pool (both are uniform per
    /// group; docs/methods/ummae.md#where-we-differ-from-the-papers-code).
    /// Secondary: of the kept units, ⌊kept·(1 − s)⌋ stay visible; the others, chosen by a random
    /// permutation, are shown to the encoder as the mask token.
    public static func sample(batch: Int, unitGrid U: Int, secondaryRatio s: Float, rng: inout RandomGenerator) -> MaskSpec {
        precondition(U % 2 == 0, "uniform sampling needs an even unit grid, got \(U)")
        let Ug = U / 2, kept = Ug * Ug
        let primary = Tensor(repeating: 1, shape: [batch, U, U])
        let secondary = Tensor(zeros: [batch, U, U])
        let hidden = kept - visibleCount(kept: kept, secondaryRatio: s)
        for b in 0..<batch {
            var keptUnits: [Int] = []
            for gy in 0..<Ug {
                for gx in 0..<Ug {
                    let pick = Int(rng.next() % 4)  // (dy, dx) = (pick / 2, pick % 2)
                    let u = (2 * gy + pick / 2) * U + 2 * gx + pick % 2
                    primary.pointer[b * U * U + u] = 0
                    keptUnits.append(u)
                }
            }
            for k in rng.permutation(kept).prefix(hidden) { secondary.pointer[b * U * U + keptUnits[k]] = 1 }
        }
        return .uniform(primary: primary, secondary: secondary)
    }

    /// Kept units that stay visible: ⌊kept·(1 − s)⌋ (48 of 64 at s = 0.25).
    public static func visibleCount(kept: Int, secondaryRatio s: Float) -> Int {
        Int((Double(kept) * (1 - Double(s))).rounded(.down))
    }
}

/// The compacted token image of one batch: the slot of group (g_r, g_c) holds the K×K tokens of
/// that group's kept unit; every token carries its original (row, col) at patch resolution.
public struct UMCompaction: Sendable {
    /// (B·Gc²) rows of the (B·G²) embedded tokens.
    public let gather: RowIndex
    /// (B, Gc², 1): 1 at tokens of secondary-masked units (they become the mask token).
    public let secondaryTokens: Tensor
    /// (B·Gc²·2) original (row, col) of every compacted token.
    public let positions: [Int32]
    /// Per sample, the kept unit (raster index on the U×U grid) of each group, group-raster order.
    public let keptUnits: [[Int]]
    public let compactGrid: Int

    public init(primary: Tensor, secondary: Tensor, tokensPerUnit K: Int) {
        let (B, U) = (primary.shape[0], primary.shape[1])
        precondition(primary.shape == [B, U, U] && secondary.shape == primary.shape && U % 2 == 0,
                     "UM-MAE masks must be (B, U, U) with U even, got \(primary.shape) and \(secondary.shape)")
        let Ug = U / 2, G = U * K, Gc = Ug * K
        var gather: [Int32] = [], positions: [Int32] = [], kept: [[Int]] = []
        let sec = Tensor(zeros: [B, Gc * Gc, 1])
        gather.reserveCapacity(B * Gc * Gc)
        positions.reserveCapacity(2 * B * Gc * Gc)
        for b in 0..<B {
            var units: [Int] = []
            for gy in 0..<Ug {
                for gx in 0..<Ug {
                    let candidates = [(0, 0), (0, 1), (1, 0), (1, 1)].map { (2 * gy + $0.0) * U + 2 * gx + $0.1 }
                    let visible = candidates.filter { primary.pointer[b * U * U + $0] == 0 }
                    precondition(visible.count == 1, "UM-MAE: group (\(gy), \(gx)) of sample \(b) keeps \(visible.count) units, not 1")
                    units.append(visible[0])
                }
            }
            kept.append(units)
            precondition((0..<(U * U)).allSatisfy { secondary.pointer[b * U * U + $0] == 0 || primary.pointer[b * U * U + $0] == 0 },
                         "UM-MAE: sample \(b) has secondary-masked units that are not kept")
            // Compacted token (gy·K + ty, gx·K + tx) ← original (uy·K + ty, ux·K + tx).
            for cy in 0..<Gc {
                for cx in 0..<Gc {
                    let u = units[(cy / K) * Ug + cx / K]
                    let (row, col) = ((u / U) * K + cy % K, (u % U) * K + cx % K)
                    gather.append(Int32(b * G * G + row * G + col))
                    positions += [Int32(row), Int32(col)]
                    if secondary.pointer[b * U * U + u] != 0 { sec.pointer[b * Gc * Gc + cy * Gc + cx] = 1 }
                }
            }
        }
        self.gather = RowIndex(gather, sourceRows: B * G * G)
        self.secondaryTokens = sec
        self.positions = positions
        self.keptUnits = kept
        self.compactGrid = Gc
    }
}
