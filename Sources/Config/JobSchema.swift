/// Every setting a job request may carry, described once: type, range, default, help and the
/// methods it applies to. Request validation, the JSON Schema in `GET /v1/methods` and in
/// `Public/openapi.json`, and the dashboard's form all read this table; nothing else lists
/// a setting's type or range.
public struct JobField: Sendable {
    /// Where the field sits in a request: at the top level, or in `overrides`.
    public enum Group: String, Sendable {
        case request, model, training
        /// Read by fine-tuning jobs only (`"task": "finetune"`).
        case finetune
    }

    public enum Kind: Sendable {
        case integer(ClosedRange<Int>)
        case number(Interval)
        case boolean
        case choice([String])
        case integers(each: ClosedRange<Int>, count: ClosedRange<Int>)
        case text
        /// A checkpoint of another job: `{"job": ID, "step": N}` (`step` optional).
        case checkpoint
    }

    public let name: String
    public let group: Group
    public let kind: Kind
    /// `null` is a value of its own (clip_grad: none; stage_widths: doubling), not "the default".
    public let nullable: Bool
    public let help: String
    /// The methods that read this field; nil for all of them.
    public let methods: [Method]?
    /// A default the method fixes whatever the preset (UM-MAE's 0.25); the preset's value otherwise.
    public let fixedDefault: JSONValue?

    public func applies(to method: Method) -> Bool { methods?.contains(method) ?? true }

    /// Why `value` is not acceptable for this field, or nil.
    public func problem(with value: JSONValue) -> String? {
        if case .null = value { return nullable ? nil : "must not be null" }
        switch kind {
        case .integer(let range):
            guard case .number(let v) = value, let n = Self.integer(v) else { return "expected an integer, got \(value.summary)" }
            return range.contains(n) ? nil : "must be in \(range.lowerBound)…\(range.upperBound), got \(n)"
        case .number(let interval):
            guard case .number(let v) = value else { return "expected a number, got \(value.summary)" }
            return interval.contains(v) ? nil : "must be in \(interval), got \(v)"
        case .boolean:
            guard case .bool = value else { return "expected true or false, got \(value.summary)" }
            return nil
        case .choice(let choices):
            guard case .string(let s) = value, choices.contains(s) else {
                return "must be one of \(choices.joined(separator: ", ")), got \(value.summary)"
            }
            return nil
        case .integers(let each, let count):
            guard case .array(let items) = value else { return "expected a list of integers, got \(value.summary)" }
            guard count.contains(items.count) else {
                return "needs \(count.lowerBound)…\(count.upperBound) entries, got \(items.count)"
            }
            for item in items {
                guard case .number(let v) = item, let n = Self.integer(v) else { return "expected a list of integers, got \(item.summary) in it" }
                guard each.contains(n) else { return "each must be in \(each.lowerBound)…\(each.upperBound), got \(n)" }
            }
            return nil
        case .text:
            guard case .string = value else { return "expected a string, got \(value.summary)" }
            return nil
        case .checkpoint:
            guard case .object(let o) = value else {
                return "expected an object like {\"job\": \"j…\", \"step\": 100} or {\"weights\": \"vit-mae-base\"}, got \(value.summary)"
            }
            if let extra = o.keys.sorted().first(where: { !["job", "step", "weights"].contains($0) }) {
                return "takes job and step, or weights, not '\(extra)'"
            }
            if let weights = o["weights"] {
                guard o["job"] == nil && o["step"] == nil else { return "takes job (and step) or weights, not both" }
                guard case .string(let id) = weights, Self.isWeightsID(id) else {
                    return "weights must name imported weights: 1–64 lowercase letters, digits, '-' or '_', got \(weights.summary)"
                }
                return nil
            }
            guard case .string(let job)? = o["job"], !job.isEmpty else { return "needs job (the id of the job to start from) or weights" }
            if let step = o["step"], step != .null {
                guard case .number(let v) = step, let n = Self.integer(v), n >= 1 else { return "step must be an integer ≥ 1, got \(step.summary)" }
            }
            return nil
        }
    }

    /// An id of imported weights: 1–64 of a–z, 0–9, '-', '_', not starting with '-' (it names a file).
    public static func isWeightsID(_ id: String) -> Bool {
        (1...64).contains(id.count) && id.first != "-" && id.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" }
    }

    /// An exactly integral value that fits an Int (JSON numbers arrive as doubles).
    static func integer(_ v: Double) -> Int? {
        guard v.rounded() == v, abs(v) < 9.2e18 else { return nil }
        return Int(v)
    }
}

/// A range of real numbers with open or closed ends, written as in the help: (0, 1], [0, 10).
public struct Interval: Sendable, CustomStringConvertible {
    public let lower: Double
    public let upper: Double
    public let lowerOpen: Bool
    public let upperOpen: Bool

    public func contains(_ v: Double) -> Bool {
        v.isFinite && (lowerOpen ? v > lower : v >= lower) && (upperOpen ? v < upper : v <= upper)
    }

    public var description: String {
        "\(lowerOpen ? "(" : "[")\(Self.show(lower)), \(Self.show(upper))\(upperOpen ? ")" : "]")"
    }

    static func show(_ v: Double) -> String { v.rounded() == v && abs(v) < 1e15 ? String(Int64(v)) : String(v) }
}

extension JSONValue {
    /// A short rendering of a value for an error message.
    var summary: String {
        switch self {
        case .null: "null"
        case .bool(let b): String(b)
        case .number(let n): Interval.show(n)
        case .string(let s): "'\(s.prefix(40))'"
        case .array(let a): "a list of \(a.count)"
        case .object: "an object"
        }
    }
}
