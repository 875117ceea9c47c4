import Config
import NN
import TensorCore

/// GreenMIM's group window attention (docs/methods/greenmim.md#group-window-attention) on the
/// visible tokens of one stage, with
/// the weights of a plain Swin block (`SwinBlock`): the relative bias is read from the same
/// table through indices computed from stored absolute coordinates.
///
/// Legend: B batch, N visible tokens of the stage (raster order, the same for the whole batch),
/// C width, H heads, w window side, s shift, g group size, nG groups, T = (2w − 1)² table rows.

/// The visible tokens of one stage: (row, col) on the stage grid, in raster order.
public struct VisibleTokens: Sendable, Equatable {
    public let grid: Int
    public let rows: [Int]
    public let cols: [Int]

    public init(grid: Int, rows: [Int], cols: [Int]) {
        precondition(rows.count == cols.count, "visible tokens: \(rows.count) rows, \(cols.count) cols")
        self.grid = grid
        self.rows = rows
        self.cols = cols
    }

    /// The tokens with mask value 0 of a (grid × grid) 0/1 mask, in raster order.
    public init(grid: Int, masked: [Bool]) {
        precondition(masked.count == grid * grid, "visible tokens: mask of \(masked.count) for grid \(grid)")
        let kept = masked.indices.filter { !masked[$0] }
        self.init(grid: grid, rows: kept.map { $0 / grid }, cols: kept.map { $0 % grid })
    }

    public var count: Int { rows.count }
}

/// How one block kind (plain or shifted windows) of a stage runs its attention: as a single
/// sequence with a window mask (few tokens), or as nG padded groups of g tokens.
public struct GroupPlan: Sendable {
    public let window: Int
    public let shift: Int
    /// g; on the single-sequence path, N.
    public let groupSize: Int
    /// nG; 1 on the single-sequence path.
    public let groups: Int
    /// Window index lists of each group (grouping path), windows numbered in raster order of
    /// their non-cyclic coordinates, counting only non-empty ones.
    public let windowGroups: [[Int]]?
    /// Visible tokens per non-empty window (n_1 … n_k).
    public let windowCounts: [Int]
    /// (nG·g) rows of the N visible rows; −1 pads. Nil on the single-sequence path.
    let gather: RowIndex?
    /// N rows of the (nG·g) grouped rows (drops the padding).
    let scatter: RowIndex?
    /// (nG, g, g): 0 within a window, −100 across windows and at padding.
    public let mask: Tensor
    /// (nG, H, g, g) elements of the (T, H) table, −1 (a zero bias) where masked.
    let biasIndex: RowIndex

    public var isSingleSequence: Bool { gather == nil }

    /// - Parameters: `window`/`shift` as the stage uses them (already clamped to the grid).
    public init(visible v: VisibleTokens, window w: Int, shift s: Int, heads H: Int, width C: Int,
                mode: GroupingMode, groupSizeMax: Int?) {
        precondition(v.count > 0, "group plan for a stage without visible tokens")
        window = w
        shift = s
        let perAxis = Grouping.windowCoordinate(v.grid - 1, window: w, shift: s) + 1
        let windowID = (0..<v.count).map { t in
            Grouping.windowCoordinate(v.rows[t], window: w, shift: s) * perAxis
                + Grouping.windowCoordinate(v.cols[t], window: w, shift: s)
        }
        // Non-empty windows in id order, their tokens in raster order.
        var members: [Int: [Int]] = [:]
        for t in 0..<v.count { members[windowID[t], default: []].append(t) }
        let ids = members.keys.sorted()
        windowCounts = ids.map { members[$0]!.count }
        let span = 2 * w - 1
        // B4's index from absolute coordinates; valid for pairs of one window.
        func relative(_ i: Int, _ j: Int) -> Int { (v.rows[i] - v.rows[j] + w - 1) * span + (v.cols[i] - v.cols[j] + w - 1) }

        // The token of each slot (−1 = padding), group-major.
        let slots: [Int]
        if v.count <= 2 * w * w {
            // Few tokens: one sequence, windows separated by the mask alone.
            slots = Array(0..<v.count)
            groupSize = v.count
            groups = 1
            windowGroups = nil
            gather = nil
            scatter = nil
        } else {
            let choice = Grouping.optimal(counts: windowCounts, width: C, windowTokens: w * w,
                                          groupSizeMax: groupSizeMax, mode: mode)
            var s: [Int] = []
            for group in choice.groups {
                let tokens = group.flatMap { members[ids[$0]]! }
                s += tokens + [Int](repeating: -1, count: choice.size - tokens.count)
            }
            slots = s
            groupSize = choice.size
            groups = choice.groups.count
            windowGroups = choice.groups
            gather = RowIndex(slots, sourceRows: v.count)
            var back = [Int](repeating: -1, count: v.count)
            for (slot, t) in slots.enumerated() where t >= 0 { back[t] = slot }
            scatter = RowIndex(back, sourceRows: slots.count)
        }
        let g = groupSize
        let m = Tensor(repeating: -100, shape: [groups, g, g])
        var bias = [Int32](repeating: -1, count: groups * H * g * g)
        for grp in 0..<groups {
            for a in 0..<g {
                let i = slots[grp * g + a]
                guard i >= 0 else { continue }
                for b in 0..<g {
                    let j = slots[grp * g + b]
                    guard j >= 0, windowID[i] == windowID[j] else { continue }
                    m.pointer[(grp * g + a) * g + b] = 0
                    let r = relative(i, j)
                    for h in 0..<H { bias[((grp * H + h) * g + a) * g + b] = Int32(r * H + h) }
                }
            }
        }
        mask = m
        biasIndex = RowIndex(bias, sourceRows: span * span * H)
    }
}

extension SwinBlock {
    /// The block on the visible tokens x (B, N, C) of a stage laid out by `plan`. LN, the qkv and
    /// output projections and the MLP run on the N tokens; only attention sees the padded groups.
    public func callAsFunction(visible x: Tensor, plan: GroupPlan) -> Tensor {
        recomputable(x) { [self] x in
            let (B, N, C) = (x.shape[0], x.shape[1], x.shape[2])
            let H = attn.heads, g = plan.groupSize
            let qkv = attn.qkv(x, normalizedBy: norm1)  // (B, N, 3C)
            let grouped = plan.gather.map { qkv.gatherRows($0, batch: B, shape: [B * plan.groups, g, 3 * C]) } ?? qkv  // (B·nG, g, 3C)
            let bias = attn.table.gatherRows(plan.biasIndex, rowLength: 1, shape: [plan.groups, H, g, g])  // (nG, H, g, g)
            let attended = Tensor.attention(qkv: grouped, heads: H, bias: bias, mask: plan.mask)  // (B·nG, g, C)
            let back = plan.scatter.map { attended.gatherRows($0, batch: B, shape: [B, N, C]) } ?? attended  // (B, N, C)
            let h = x.plusBranch(droppingPath: dropPathRate) { attn.proj(back, adding: $0) }
            return h.plusBranch(droppingPath: dropPathRate) { mlp(h, normalizedBy: norm2, adding: $0) }
        }
    }
}
