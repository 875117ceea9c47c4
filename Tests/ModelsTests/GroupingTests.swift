import Config
import Testing
@testable import Models
import TensorCore

/// GreenMIM's partition of windows into groups (docs/methods/greenmim.md#grouping).
@Suite("Grouping: knapsack partition and group-size search") struct GroupingTests {
    static func randomCounts(_ rng: inout RandomGenerator, windows: ClosedRange<Int>, capacity: Int) -> [Int] {
        let n = windows.lowerBound + Int(rng.next() % UInt64(windows.count))
        return (0..<n).map { _ in 1 + Int(rng.next() % UInt64(capacity)) }
    }

    static func expectValid(_ groups: [[Int]], _ counts: [Int], capacity g: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(groups.flatMap { $0 }.sorted() == Array(counts.indices), "every window exactly once: \(groups)",
                sourceLocation: sourceLocation)
        for group in groups {
            #expect(!group.isEmpty && group.map { counts[$0] }.reduce(0, +) <= g, "group \(group) over capacity \(g)",
                    sourceLocation: sourceLocation)
        }
    }

    /// All set partitions of 0..<n (Bell(n) of them), by restricted growth strings.
    static func allPartitions(_ n: Int) -> [[[Int]]] {
        var out: [[[Int]]] = []
        var labels = [Int](repeating: 0, count: n)
        func extend(_ i: Int, _ blocks: Int) {
            if i == n {
                out.append((0..<blocks).map { b in (0..<n).filter { labels[$0] == b } })
                return
            }
            for b in 0...blocks {
                labels[i] = b
                extend(i + 1, max(blocks, b + 1))
            }
        }
        extend(0, 0)
        return out
    }

    @Test func knapsackRoundsTakeAMaximumSubset() {
        var rng = RandomGenerator(seed: 1)
        for _ in 0..<300 {
            let g = 4 + Int(rng.next() % 46)
            let counts = Self.randomCounts(&rng, windows: 1...10, capacity: g)
            let picked = Grouping.knapsack(capacity: g, counts: counts)
            let total = picked.map { counts[$0] }.reduce(0, +)
            var best = 0
            for m in 0..<(1 << counts.count) {
                let s = counts.indices.filter { m & (1 << $0) != 0 }.map { counts[$0] }.reduce(0, +)
                if s <= g { best = max(best, s) }
            }
            #expect(total == best && picked == picked.sorted(), "counts \(counts), capacity \(g): took \(picked)")
        }
    }

    @Test func partitionsNeverExceedCapacityAndCoverEveryWindowOnce() {
        var rng = RandomGenerator(seed: 2)
        for _ in 0..<400 {
            let w = [4, 7][Int(rng.next() % 2)]
            let counts = Self.randomCounts(&rng, windows: 1...40, capacity: w * w)
            for g in counts.max()!...(w * w) {
                Self.expectValid(Grouping.fill(capacity: g, counts: counts), counts, capacity: g)
                Self.expectValid(Grouping.firstFitDecreasing(capacity: g, counts: counts), counts, capacity: g)
            }
            for mode in GroupingMode.allCases {
                let c = Grouping.optimal(counts: counts, width: 96, windowTokens: w * w, groupSizeMax: nil, mode: mode)
                #expect(c.size >= counts.max()! && c.size <= w * w)
                Self.expectValid(c.groups, counts, capacity: c.size)
            }
        }
    }

    @Test func searchCostsNoMoreThanGreedyOrTheReference() {
        var rng = RandomGenerator(seed: 3)
        for _ in 0..<300 {
            let w = [4, 7][Int(rng.next() % 2)], C = [32, 96, 128][Int(rng.next() % 3)]
            let counts = Self.randomCounts(&rng, windows: 1...40, capacity: w * w)
            let search = Grouping.optimal(counts: counts, width: C, windowTokens: w * w, groupSizeMax: nil, mode: .search)
            let searchCost = Grouping.cost(groups: search.groups.count, size: search.size, width: C)
            let fixed = Grouping.optimal(counts: counts, width: C, windowTokens: w * w, groupSizeMax: nil, mode: .fixed)
            #expect(searchCost <= Grouping.cost(groups: fixed.groups.count, size: fixed.size, width: C))
            for g in counts.max()!...(w * w) {
                for greedy in [Grouping.firstFitDecreasing(capacity: g, counts: counts), Grouping.fill(capacity: g, counts: counts)] {
                    #expect(searchCost <= Grouping.cost(groups: greedy.count, size: g, width: C), "counts \(counts) at g \(g)")
                }
            }
        }
    }

    @Test func searchEqualsBruteForceOnSmallCases() {
        var rng = RandomGenerator(seed: 4)
        let partitions = (0...7).map { Self.allPartitions($0) }
        for _ in 0..<200 {
            let w = [3, 4][Int(rng.next() % 2)], C = [8, 32][Int(rng.next() % 2)]
            let counts = Self.randomCounts(&rng, windows: 1...7, capacity: w * w)
            var best = Double.infinity, bestSize = 0
            for g in counts.max()!...(w * w) {
                for p in partitions[counts.count] where p.allSatisfy({ $0.map { counts[$0] }.reduce(0, +) <= g }) {
                    let c = Grouping.cost(groups: p.count, size: g, width: C)
                    if c < best { (best, bestSize) = (c, g) }
                }
            }
            let search = Grouping.optimal(counts: counts, width: C, windowTokens: w * w, groupSizeMax: nil, mode: .search)
            #expect(Grouping.cost(groups: search.groups.count, size: search.size, width: C) == best && search.size == bestSize,
                    "counts \(counts), w \(w), C \(C)")
        }
    }

    @Test func fixedModeReproducesTheReference() {
        // g = min(w², max n) and the repeated knapsack, as the reference code does.
        let counts = [16, 8, 8, 4, 12, 6, 2]
        let c = Grouping.optimal(counts: counts, width: 32, windowTokens: 16, groupSizeMax: nil, mode: .fixed)
        #expect(c.size == 16 && c.groups == Grouping.fill(capacity: 16, counts: counts))
        #expect(c.groups == [[0], [1, 2], [3, 4], [5, 6]])
        // The search may pick a larger g; group_size_max caps it, never below g_min.
        let capped = Grouping.optimal(counts: [3, 3, 3], width: 8, windowTokens: 16, groupSizeMax: 2, mode: .search)
        #expect(capped.size == 3 && capped.groups.count == 3)
    }
}
