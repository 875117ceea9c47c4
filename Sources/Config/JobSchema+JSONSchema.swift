/// The job request as a JSON Schema (draft 2020-12, which OpenAPI 3.1 embeds), rendered from
/// `JobSchema.fields`. `x-methods` lists the methods a field applies to when not all of them;
/// `x-group` says whether an override is a model or a training setting; `x-order` is its place.
extension JobSchema {
    public static func jsonSchema() -> JSONValue {
        var top: [String: JSONValue] = [
            "method": .object(["type": .string("string"), "enum": .array(Method.allCases.map { .string($0.rawValue) }),
                               "description": .string("The pretraining method")]),
            "preset": .object(["type": .string("string"), "default": .string("default"),
                               "description": .string("tiny (test size), small (small images on a CPU), default (the paper's), or a preset name of the method (GET /v1/methods)")]),
            "dataset": .object(["type": .string("string"), "default": .string("synthetic"),
                                "description": .string("A dataset id (GET /v1/datasets)")]),
        ]
        for (i, f) in fields.enumerated() where f.group == .request { top[f.name] = property(f, order: i) }
        var overrides: [String: JSONValue] = [:]
        for (i, f) in fields.enumerated() where f.group != .request { overrides[f.name] = property(f, order: i) }
        top["overrides"] = .object([
            "type": .string("object"), "additionalProperties": .bool(false), "properties": .object(overrides),
            "description": .string("Model and training settings that differ from the preset's"),
        ])
        return .object([
            "title": .string("JobRequest"), "type": .string("object"), "required": .array([.string("method")]),
            "additionalProperties": .bool(false), "properties": .object(top),
        ])
    }

    /// `x-order` is the field's place in the table, for forms (JSON objects have no order).
    static func property(_ f: JobField, order: Int) -> JSONValue {
        var p: [String: JSONValue] = ["description": .string(f.help), "x-order": .number(Double(order))]
        func type(_ name: String) -> JSONValue { f.nullable ? .array([.string(name), .string("null")]) : .string(name) }
        switch f.kind {
        case .integer(let r):
            p["type"] = type("integer")
            p["minimum"] = .number(Double(r.lowerBound))
            p["maximum"] = .number(Double(r.upperBound))
        case .number(let i):
            p["type"] = type("number")
            p[i.lowerOpen ? "exclusiveMinimum" : "minimum"] = .number(i.lower)
            p[i.upperOpen ? "exclusiveMaximum" : "maximum"] = .number(i.upper)
        case .boolean:
            p["type"] = type("boolean")
        case .choice(let choices):
            p["type"] = type("string")
            p["enum"] = .array(choices.map(JSONValue.string) + (f.nullable ? [.null] : []))
        case .integers(let each, let count):
            p["type"] = type("array")
            p["items"] = .object(["type": .string("integer"), "minimum": .number(Double(each.lowerBound)),
                                  "maximum": .number(Double(each.upperBound))])
            p["minItems"] = .number(Double(count.lowerBound))
            p["maxItems"] = .number(Double(count.upperBound))
        case .text:
            p["type"] = type("string")
        case .checkpoint:
            p["type"] = type("object")
            p["additionalProperties"] = .bool(false)
            p["oneOf"] = .array([.object(["required": .array([.string("job")])]),
                                 .object(["required": .array([.string("weights")])])])
            p["properties"] = .object([
                "job": .object(["type": .string("string"), "minLength": .number(1), "description": .string("A pretraining job's id")]),
                "step": .object(["type": .array([.string("integer"), .string("null")]), "minimum": .number(1),
                                 "description": .string("A step the job has a checkpoint of (null or absent: its newest)")]),
                "weights": .object(["type": .string("string"), "pattern": .string("^[a-z0-9_][a-z0-9_-]{0,63}$"),
                                    "description": .string("Imported weights (GET /v1/weights): a file <id>.safetensors in the checkpoint directory's weights/ folder")]),
            ])
        }
        if let d = f.fixedDefault { p["default"] = d }
        if let methods = f.methods { p["x-methods"] = .array(methods.map { .string($0.rawValue) }) }
        if f.group != .request { p["x-group"] = .string(f.group.rawValue) }
        return .object(p)
    }
}
