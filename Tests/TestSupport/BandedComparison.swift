import Foundation
import Synchronization
import Testing

/// Compares our float32 results with a banded golden fixture (`banded` in
/// Tools/reference/fixture_io.py): each output `<name>` is stored as its float64 value, and
/// `band.<name>` holds, per element, how far float32 computations of the same steps wandered from
/// it (several realisations, each with another pattern of rounding errors).
///
/// An element passes when |ours − ref| ≤ `factor` · max(band, the tensor's median band) + one
/// float32 ulp of ref. `factor` covers the chance that the sampled realisations all happened to
/// land closer to float64 than our kernels do; the median keeps one lucky element from getting an
/// unfairly tight bound. An element whose reference is 0 with a band of 0 (every realisation
/// gave exactly 0: an analytic zero) must be exactly 0; one whose reference is smaller than its
/// band (a value float32 cannot resolve, such as a gradient that is zero in exact arithmetic but
/// rounding noise in float32) is a noise zero: ours must be as small. A tensor in which more than
/// `maxWideFraction` of the elements have a band wider than `wideRelative` of the tensor's
/// largest magnitude fails as a whole: the fixture then checks too little of it, and should
/// compare something better conditioned.
public final class BandedComparison: Sendable {
    public static let factor = 8.0
    public static let wideRelative = 1e-4
    public static let maxWideFraction = 0.05

    public let fixture: Fixture
    public let label: String
    private let tally = Mutex(Tally())

    public struct Tally: Sendable {
        public var tensors = 0, elements = 0, wide = 0, analyticZeros = 0, noiseZeros = 0
        /// The largest |ours − ref| ÷ bound seen, and where.
        public var worstRatio = 0.0
        public var worstName = ""
    }

    public init(_ fixture: Fixture, label: String) {
        self.fixture = fixture
        self.label = label
    }

    public var totals: Tally { tally.withLock { $0 } }

    /// Checks `ours` against the fixture's `name` within its band; records the outcome.
    public func expect(_ ours: [Float], _ name: String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let ref = fixture[name], let band = fixture["band.\(name)"] else {
            Issue.record("\(label): fixture has no \(name) with a band.\(name)", sourceLocation: sourceLocation)
            return
        }
        guard ours.count == ref.values.count, band.values.count == ref.values.count else {
            Issue.record("\(name): \(ours.count) values, fixture has \(ref.values.count) (band \(band.values.count))",
                         sourceLocation: sourceLocation)
            return
        }
        let bands = band.values.map(Double.init)
        let median = bands.sorted()[bands.count / 2]
        let scale = ref.values.map { Double(abs($0)) }.max() ?? 0
        var wide = 0, zeros = 0, noise = 0, failures = 0
        var worst = (ratio: 0.0, index: 0, bound: 0.0)
        for i in ref.values.indices {
            let r = ref.values[i], b = bands[i], o = ours[i]
            if r == 0 && b == 0 {
                zeros += 1
                if o != 0 { failures += 1; worst = (.infinity, i, 0) }
                continue
            }
            if Double(abs(r)) <= b {
                noise += 1
            } else if b > Self.wideRelative * scale {
                wide += 1
            }
            let bound = Self.factor * max(b, median) + Double(r.ulp)
            let ratio = Double(abs(o - r)) / bound
            if !(ratio <= 1) { failures += 1 }
            if !(ratio <= worst.ratio) { worst = (ratio, i, bound) }
        }
        let i = worst.index
        #expect(failures == 0, """
            \(label) \(name): \(failures) of \(ref.values.count) elements outside the band; worst at [\(i)]: \
            ours \(ours[i]), reference \(ref.values[i]), band \(bands[i]), bound \(worst.bound)
            """, sourceLocation: sourceLocation)
        #expect(Double(wide) <= Self.maxWideFraction * Double(ref.values.count), """
            \(label) \(name): \(wide) of \(ref.values.count) elements need a band wider than \
            \(Self.wideRelative) of the tensor's scale: the reference is ill-conditioned here
            """, sourceLocation: sourceLocation)
        tally.withLock {
            $0.tensors += 1
            $0.elements += ref.values.count
            $0.wide += wide
            $0.analyticZeros += zeros
            $0.noiseZeros += noise
            if worst.ratio > $0.worstRatio { $0.worstRatio = worst.ratio; $0.worstName = name }
        }
    }

    /// One line for the test log: how much was compared and how close it came to the bounds.
    public func summary() -> String {
        let t = totals
        return "\(label): \(t.tensors) tensors, \(t.elements) elements, \(t.wide) in a wide band, "
            + "\(t.analyticZeros) analytic and \(t.noiseZeros) noise zeros; worst |Δ| ÷ bound \(String(format: "%.3f", t.worstRatio)) (\(t.worstName))"
    }
}
