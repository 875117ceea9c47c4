import Dispatch
import Synchronization

/// Where a training step's time goes, by kind of work (`mimserve-bench train --profile`).
///
/// Off unless code runs inside `Profiler.collect`: then every op on that thread times its
/// forward pass and its backward closure, and the optimizer its update. Spans do not nest: work
/// inside a span (the GEMMs of an attention op, the kernels a layer norm calls) counts toward the
/// outermost one, so the kinds add up to at most the elapsed time; what no span covers (mask
/// sampling, glue between ops, building the tape) is the elapsed time minus their sum.
public enum Profiler {
    public enum Kind: String, CaseIterable, Sendable {
        /// Dense layers and matrix products (OpenBLAS or oneDNN).
        case gemm
        /// Convolutions (patch embedding, ConvMAE's stages).
        case conv
        /// Scaled dot-product attention and softmax, their GEMMs included.
        case attention
        case norm
        /// GELU, ReLU.
        case activation
        /// Adds, products, scaling, sums.
        case elementwise
        /// Copies that move data without arithmetic: concat, slices, reshapes, row gathers and scatters.
        case memory
        case loss
        /// AdamW's update, gradient clipping and checks, zeroing gradients.
        case optimizer
        /// The forward pass of a recomputed block, run again in the backward pass (its backward
        /// counts under the kinds of its ops).
        case recompute
    }

    public enum Phase: Int, Sendable { case forward, backward, update }

    public struct Totals: Sendable, Equatable {
        public var seconds = 0.0
        public var calls = 0
    }

    /// What one `collect` gathered: seconds and calls per kind and phase.
    public typealias Profile = [Kind: [Phase: Totals]]

    final class Collector: Sendable {
        let totals = Mutex<Profile>([:])
    }

    @TaskLocal static var collector: Collector?
    @TaskLocal static var inside = false

    /// Runs `body` with profiling on for the ops it runs on this thread; returns what they took.
    public static func collect(_ body: () throws -> Void) rethrows -> Profile {
        let c = Collector()
        try $collector.withValue(c, operation: body)
        return c.totals.withLock { $0 }
    }

    /// Runs `body`, timing it as `kind` in `phase` inside `collect` when no span is open.
    @inline(__always)
    public static func measure<R>(_ kind: Kind, _ phase: Phase, _ body: () throws -> R) rethrows -> R {
        guard let c = collector, !inside else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try $inside.withValue(true, operation: body)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        c.totals.withLock { t in
            t[kind, default: [:]][phase, default: Totals()].seconds += seconds
            t[kind, default: [:]][phase, default: Totals()].calls += 1
        }
        return result
    }
}

/// The fp32 products a piece of work runs through `gemm`, by shape (`mimserve-bench train
/// --kernels` times each shape in each library). Off unless code runs inside `record`; the
/// per-head products inside attention call the libraries directly and are not counted.
public enum GEMMShapes {
    public struct Shape: Hashable, Sendable {
        public let transA: Bool
        public let transB: Bool
        public let m: Int
        public let n: Int
        public let k: Int
    }

    final class Recorder: Sendable {
        let counts = Mutex<[Shape: Int]>([:])
    }

    @TaskLocal static var recorder: Recorder?

    /// Runs `body`; returns how many times each shape ran in it on this thread.
    public static func record(_ body: () throws -> Void) rethrows -> [Shape: Int] {
        let r = Recorder()
        try $recorder.withValue(r, operation: body)
        return r.counts.withLock { $0 }
    }

    @inline(__always)
    static func note(transA: Bool, transB: Bool, m: Int, n: Int, k: Int) {
        guard let r = recorder else { return }
        r.counts.withLock { $0[Shape(transA: transA, transB: transB, m: m, n: n, k: k), default: 0] += 1 }
    }
}
