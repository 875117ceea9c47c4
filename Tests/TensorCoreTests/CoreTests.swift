import Testing
import TestSupport
@testable import TensorCore

@Suite("Tensor storage, autodiff tape and the generator") struct CoreTests {
    @Test func bucketSizesAreQuarterPowersOfTwo() {
        #expect(BufferPool.bucketSize(for: 1) == 64)
        #expect(BufferPool.bucketSize(for: 64) == 64)
        #expect(BufferPool.bucketSize(for: 65) == 80)
        #expect(BufferPool.bucketSize(for: 128) == 128)
        #expect(BufferPool.bucketSize(for: 129) == 160)
        for n in [100, 1000, 12345, 1 << 20 | 7] {
            let s = BufferPool.bucketSize(for: n)
            #expect(s >= n && Double(s) <= Double(n) * 1.25 + 64)
        }
    }

    @Test func releasedBuffersAreReused() {
        // A pool of its own: the shared one is used (and trimmed) by tests running alongside.
        let pool = BufferPool()
        _ = pool.storage(count: 123456)  // released at once
        for _ in 0..<5 { _ = pool.storage(count: 123400) }  // same bucket
        let s = pool.statistics
        #expect(s.freshAllocations == 1 && s.reuses == 5)
        #expect(s.liveFloats == 0 && s.cachedFloats == BufferPool.bucketSize(for: 123456))
        pool.trim()
        #expect(pool.statistics.cachedFloats == 0)
    }

    @Test func largeBuffersGoBackToTheSystem() {
        let pool = BufferPool()
        do {
            let held = pool.storage(count: BufferPool.directFloats + 5)
            #expect(held.capacity == BufferPool.directFloats + 5)  // no bucket slack either
            #expect(pool.statistics.liveFloats == held.capacity && pool.statistics.peakLiveFloats == held.capacity)
        }
        _ = pool.storage(count: BufferPool.directFloats)
        let s = pool.statistics
        #expect(s.directAllocations == 2 && s.freshAllocations == 0 && s.reuses == 0)
        #expect(s.liveFloats == 0 && s.cachedFloats == 0)
    }

    @Test func everyBufferStartsOnACacheLineAndItsWholeLengthIsUsable() {
        let pool = BufferPool()
        // Small and cached, heap-direct, and mapped sizes; odd counts so malloc's own 16-byte
        // alignment would show; each twice so the second comes from the free list or the heap's hole.
        for count in [1, 17, 1001, BufferPool.directFloats + 3, BufferPool.heapLimitFloats + 5] {
            for _ in 0..<2 {
                let s = pool.storage(count: count)
                #expect(UInt(bitPattern: s.pointer) % 64 == 0, "count \(count)")
                // Written end to end: the 64 bytes of slack must cover the shift to the line.
                s.pointer.update(repeating: 1, count: s.capacity)
                #expect(s.pointer[s.capacity - 1] == 1)
            }
        }
        pool.trim()
    }

    /// The test setting that makes reads of released memory fail loudly (turned on here for
    /// a moment; correct code never reads a released buffer, so other tests cannot notice).
    @Test func releasedBuffersReadNaNWhenPoisoningIsOn() {
        let pool = BufferPool()
        let was = BufferPool.poisonsReleased.exchange(true, ordering: .relaxed)
        defer { BufferPool.poisonsReleased.store(was, ordering: .relaxed) }
        var storage: Storage? = pool.storage(count: 1001)
        let p = storage!.pointer, capacity = storage!.capacity
        p.update(repeating: 1, count: capacity)
        storage = nil  // back on the pool's free list, still mapped
        #expect((0..<capacity).allSatisfy { p[$0].isNaN })
        #expect(pool.storage(count: 1001).pointer == p, "the same block is handed out again, still NaN until written")
        pool.trim()
    }

    @Test func gradientsAccumulateAcrossUses() {
        let x = Tensor([1, 2, 3], shape: [3])
        x.requiresGrad = true
        let y = (x * x + x).sum()  // dy/dx = 2x + 1
        y.backward()
        #expect(x.grad?.scalars == [3, 5, 7])
        (x * 2).sum().backward()
        #expect(x.grad?.scalars == [5, 7, 9])
    }

    /// The tape holds vertices, not tensors: an op whose backward reads no values of an input (a
    /// gather, a sum, a reshape, a residual added inside a product) lets those values go once the
    /// forward pass is done with them, and one that reads them (GELU, a product) keeps them.
    /// The gradients are the same as ever (finite differences).
    @Test func theTapeKeepsOnlyTheValuesABackwardReads() {
        let x = Tensor([1, 2, 3, -1, 0.5, 4], shape: [3, 2])
        let w = Tensor([0.5, -1, 2, 0.25], shape: [2, 2])
        let swap = RowIndex([2, 0, 1], sourceRows: 3)
        weak var gathered: Tensor?, activated: Tensor?, summand: Tensor?, residual: Tensor?, squared: Tensor?
        func loss() -> Tensor {
            let a = x.linear(weight: w)  // only gathered
            let b = a.gatherRows(swap, shape: [3, 2])  // GELU reads it
            let s = b.gelu()  // only summed
            let r = s + x.linear(weight: w).reshaped([3, 2])  // only the next product's residual
            let d = x.linear(weight: w, adding: r)  // squared: the product reads it
            (gathered, activated, summand, residual, squared) = (a, b, s, r, d)
            return (d * d).sum()
        }
        checkGradients([x, w], eps: 1e-3) {
            let y = loss()
            if GradMode.isEnabled {
                #expect(gathered == nil && summand == nil && residual == nil)
                #expect(activated != nil && squared != nil)
            }
            return y
        }
    }

    /// Where it can, a backward hands its output gradient to one input as that input's own
    /// (`Vertex.take`): a sum or difference to its left side, a reshape to its input, a product
    /// to the residual added inside it, a recomputed block's output gradient to the block's
    /// last op. Later ops then add into that buffer in place, so every case where one tensor
    /// sits on two sides (x + x, x − x, a residual that is also the product's input, a block
    /// that returns its input) must still give the right gradients (finite differences).
    @Test func handedOverGradientsStayRightWhenATensorIsUsedTwice() {
        let x = Tensor([1, 2, 3, -1, 0.5, 4].map { $0 / 4 }, shape: [3, 2])
        let w = Tensor([0.5, -1, 2, 0.25], shape: [2, 2])
        // Each case alone, so the op under test is the first to give x a gradient.
        let cases: [() -> Tensor] = [
            { x + x },
            { ((x + x) - x).reshaped([6]).reshaped([3, 2]) + x * x },
            { x.linear(weight: w, adding: x) },  // the residual is the product's input
            { x.geluLinear(weight: w, adding: x) },
            { x.recomputed(parameters: [w]) { t, _ in t + t.linear(weight: w) } },
            { x.recomputed(parameters: []) { t, _ in t } + x.linear(weight: w) },  // a block that returns its input
        ]
        for f in cases { checkGradients([x, w], eps: 1e-3, f) }
    }

    @Test func noGradModeRecordsNothing() {
        let x = Tensor([1, 2], shape: [2])
        x.requiresGrad = true
        let y = GradMode.withoutGrad { x * 3 }
        #expect(!y.requiresGrad)
        #expect((x * 3).requiresGrad)
    }

    @Test func generatorIsDeterministicAndRestorable() {
        var a = RandomGenerator(seed: 42), b = RandomGenerator(seed: 42)
        #expect((0..<10).map { _ in a.next() } == (0..<10).map { _ in b.next() })
        let saved = a
        let x = (0..<5).map { _ in a.uniform() }
        var restored = RandomGenerator(state: saved.state)
        #expect((0..<5).map { _ in restored.uniform() } == x)
        var c = RandomGenerator(seed: 7)
        let normals = (0..<20000).map { _ in Double(c.normal()) }
        let mean = normals.reduce(0, +) / 20000
        let variance = normals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 20000
        #expect(abs(mean) < 0.03 && abs(variance - 1) < 0.05)
        #expect(c.permutation(10).sorted() == Array(0..<10))
    }
}

@Suite("Profiler") struct ProfilerTests {
    @Test func spansCountEachOpOnceByKindAndPhaseAndDoNotNest() {
        let x = randomTensor([4, 8], seed: 3), w = randomTensor([6, 8], seed: 4)
        w.requiresGrad = true
        // Outside `collect`, nothing is recorded (and other tests' ops never are).
        let profile = Profiler.collect {
            let y = x.linear(weight: w).gelu().sum()
            y.backward()
            // Inside an open span, the op's own span does not count.
            _ = Profiler.measure(.norm, .forward) { x.linear(weight: w) }
        }
        #expect(profile[.gemm]?[.forward]?.calls == 1 && profile[.gemm]?[.backward]?.calls == 1)
        #expect(profile[.activation]?[.forward]?.calls == 1 && profile[.activation]?[.backward]?.calls == 1)
        #expect(profile[.elementwise]?[.forward]?.calls == 1 && profile[.elementwise]?[.backward]?.calls == 1)
        #expect(profile[.norm]?[.forward]?.calls == 1)
        #expect(profile.values.flatMap(\.values).allSatisfy { $0.seconds >= 0 })
        let outside = Profiler.collect {}
        #expect(outside.isEmpty)
    }
}
