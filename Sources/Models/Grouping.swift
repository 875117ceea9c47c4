import Config

/// GreenMIM's optimal grouping (docs/methods/greenmim.md#grouping): pack the visible tokens of
/// uneven local windows into groups of equal size g so one batched dense attention call serves every window.
///
/// Legend: w window side, s shift, n_i visible tokens of window i, g group size (capacity),
/// P a partition of the windows into groups (each Σ n ≤ g), C the stage width.
///
/// `fill` is the repeated 0/1 knapsack described there; the reference code runs it once at
/// g = min(w², max n_i) (`fixed`). `search` tries every g in g_min … g_max and keeps the
/// cheapest under the attention-cost model. For each g it keeps the fewest groups among the
/// knapsack fill, first-fit decreasing and, for a dozen windows or fewer, an exact subset
/// dynamic program: on random window counts the knapsack alone needs more groups than
/// first-fit decreasing about 6% of the time, and a greedy round can also miss the optimum.
public enum Grouping {
    /// Per-axis window of coordinate c in the non-cyclic view of B4: ⌊(c + (w − s) mod w) / w⌋.
    @inline(__always)
    public static func windowCoordinate(_ c: Int, window w: Int, shift s: Int) -> Int { (c + (w - s) % w) / w }

    /// The subset of `counts` with the largest total ≤ `capacity` (item weight = value = n_i),
    /// as indices in increasing order. Take-or-skip table, backtracked from the last item:
    /// an item is taken only when skipping it cannot reach the same total.
    public static func knapsack(capacity: Int, counts: [Int]) -> [Int] {
        let n = counts.count, width = capacity + 1
        var table = [Int](repeating: 0, count: (n + 1) * width)  // table[i][c]: best using the first i items
        for i in stride(from: 1, through: n, by: 1) {
            let wi = counts[i - 1]
            for c in 0...capacity {
                var best = table[(i - 1) * width + c]
                if wi <= c { best = max(best, table[(i - 1) * width + c - wi] + wi) }
                table[i * width + c] = best
            }
        }
        var chosen: [Int] = []
        var c = capacity
        for i in stride(from: n, to: 0, by: -1) where table[i * width + c] != table[(i - 1) * width + c] {
            chosen.append(i - 1)
            c -= counts[i - 1]
        }
        return chosen.reversed()
    }

    /// fill(g, counts): repeatedly take the knapsack-best subset of the remaining windows.
    /// Returns groups of window indices (each in increasing order).
    public static func fill(capacity g: Int, counts: [Int]) -> [[Int]] {
        precondition(counts.allSatisfy { $0 >= 1 && $0 <= g }, "fill: every count must be in 1…\(g), got \(counts)")
        var remaining = Array(counts.indices)
        var groups: [[Int]] = []
        while !remaining.isEmpty {
            let picked = knapsack(capacity: g, counts: remaining.map { counts[$0] }).map { remaining[$0] }
            groups.append(picked)
            let taken = Set(picked)
            remaining.removeAll { taken.contains($0) }
        }
        return groups
    }

    /// First-fit decreasing: windows by count (largest first), each into the first group it fits.
    public static func firstFitDecreasing(capacity g: Int, counts: [Int]) -> [[Int]] {
        var groups: [[Int]] = [], loads: [Int] = []
        for i in counts.indices.sorted(by: { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }) {
            if let b = loads.firstIndex(where: { $0 + counts[i] <= g }) {
                groups[b].append(i)
                loads[b] += counts[i]
            } else {
                groups.append([i])
                loads.append(counts[i])
            }
        }
        return groups.map { $0.sorted() }
    }

    /// The fewest groups, exactly: a dynamic program over subsets (3^n work, so n ≤ 12).
    public static func exactMinimum(capacity g: Int, counts: [Int]) -> [[Int]] {
        let n = counts.count
        precondition(n <= 16, "exactMinimum is for small window counts, got \(n)")
        let full = (1 << n) - 1
        var sums = [Int](repeating: 0, count: 1 << n)
        for m in 1..<(1 << n) {
            let low = m & -m
            sums[m] = sums[m ^ low] + counts[low.trailingZeroBitCount]
        }
        // best[m]: fewest groups for the windows in m; choice[m]: the group holding m's lowest window.
        var best = [Int](repeating: Int.max, count: 1 << n), choice = [Int](repeating: 0, count: 1 << n)
        best[0] = 0
        for m in stride(from: 1, through: full, by: 1) {
            let low = m & -m, rest = m ^ low
            var sub = rest
            while true {
                let group = sub | low
                if sums[group] <= g, best[m ^ group] != Int.max, best[m ^ group] + 1 < best[m] {
                    best[m] = best[m ^ group] + 1
                    choice[m] = group
                }
                if sub == 0 { break }
                sub = (sub - 1) & rest
            }
        }
        var groups: [[Int]] = []
        var m = full
        while m != 0 {
            let group = choice[m]
            groups.append((0..<n).filter { group & (1 << $0) != 0 })
            m ^= group
        }
        return groups
    }

    /// The modelled cost of |P| padded groups of size g at width C: projections plus attention,
    /// |P|·(4·g·C² + 2·g²·C). A model, not a measurement, and open to tuning
    /// (docs/methods/greenmim.md#grouping).
    public static func cost(groups: Int, size g: Int, width C: Int) -> Double {
        Double(groups) * (4 * Double(g) * Double(C) * Double(C) + 2 * Double(g) * Double(g) * Double(C))
    }

    /// A chosen group size and partition.
    public struct Choice: Sendable, Equatable {
        public let size: Int
        public let groups: [[Int]]
    }

    /// `fixed`: g = min(w², max n_i) with the knapsack fill (the reference code).
    /// `search`: the g in g_min … max(g_max, g_min) with the lowest cost; ties go to the smaller g.
    public static func optimal(counts: [Int], width: Int, windowTokens: Int, groupSizeMax: Int?,
                               mode: GroupingMode) -> Choice {
        precondition(!counts.isEmpty, "grouping needs at least one non-empty window")
        let gMin = counts.max()!
        switch mode {
        case .fixed:
            let g = min(windowTokens, gMin)
            return Choice(size: g, groups: fill(capacity: g, counts: counts))
        case .search:
            let gMax = max(groupSizeMax ?? windowTokens, gMin)
            var best: (cost: Double, choice: Choice)?
            for g in gMin...gMax {
                let p = fewestGroups(capacity: g, counts: counts)
                let c = cost(groups: p.count, size: g, width: width)
                if best == nil || c < best!.cost { best = (c, Choice(size: g, groups: p)) }
            }
            return best!.choice
        }
    }

    /// The best of the knapsack fill, first-fit decreasing and (≤ 12 windows) the exact program.
    static func fewestGroups(capacity g: Int, counts: [Int]) -> [[Int]] {
        var p = fill(capacity: g, counts: counts)
        let ffd = firstFitDecreasing(capacity: g, counts: counts)
        if ffd.count < p.count { p = ffd }
        if counts.count <= 12 && p.count > (counts.reduce(0, +) + g - 1) / g {  // above the lower bound
            let exact = exactMinimum(capacity: g, counts: counts)
            if exact.count < p.count { p = exact }
        }
        return p
    }
}
