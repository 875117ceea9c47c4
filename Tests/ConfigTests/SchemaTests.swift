import Config
import Foundation
import Testing

/// `JobSchema` is the one description of every setting: these tests hold the presets, the
/// request validation and the rendered JSON Schema to it.
@Suite("Job schema") struct SchemaTests {
    /// Problems of a tiny job with `overrides`; a fine-tuning job's when `task` says so.
    func problems(_ method: Method, _ overrides: [String: JSONValue], task: JobTask = .pretrain) -> [FieldError] {
        do {
            _ = try JobConfig.resolve(JobRequest(method: method.rawValue, preset: "tiny", task: task.rawValue, overrides: overrides))
            return []
        } catch { return error.errors }
    }

    /// Every setting of every preset, for pretraining and for fine-tuning, is a field of the
    /// table, and its value has the field's type and range.
    @Test(arguments: Presets.all.map(\.name), JobTask.allCases)
    func everyPresetSettingIsDescribed(preset name: String, task: JobTask) throws {
        let preset = try #require(Presets.named(name))
        let job = try JobConfig.resolve(JobRequest(method: preset.model.method.rawValue, preset: name, task: task.rawValue))
        var values = JSONValue.object(of: job.model).merging(JSONValue.object(of: job.training)) { a, _ in a }
        if let f = job.finetune {
            values.merge(JSONValue.object(of: f).filter { FinetuneConfig.overridableNames.contains($0.key) }) { a, _ in a }
        }
        #expect((job.finetune != nil) == (task == .finetune))
        for (key, value) in values where key != "method" {
            let field = try #require(JobSchema.field(named: key), "\(key) of \(name) is not in the schema")
            #expect(field.problem(with: value) == nil, "\(name).\(key) = \(value): \(field.problem(with: value) ?? "")")
        }
        // Every field the method reads is either set by the preset or has a documented default.
        for field in JobSchema.fields where field.applies(to: preset.model.method) && (field.group == .finetune) == (task == .finetune) {
            #expect(values[field.name] != nil || field.fixedDefault != nil || field.nullable, "\(name) leaves \(field.name) undescribed")
        }
    }

    /// What the table accepts, the server accepts: each preset's own values, sent back as overrides, resolve to the same job.
    @Test(arguments: Method.allCases)
    func thePresetsOwnValuesAreAcceptedAsOverrides(method: Method) throws {
        let job = try JobConfig.resolve(JobRequest(method: method.rawValue, preset: "tiny"))
        var overrides = JSONValue.object(of: job.model).merging(JSONValue.object(of: job.training)) { a, _ in a }
        overrides = overrides.filter { key, _ in JobSchema.field(named: key).map { $0.group != .request && $0.applies(to: method) } ?? false }
        #expect(problems(method, overrides) == [])
        let again = try JobConfig.resolve(JobRequest(method: method.rawValue, preset: "tiny", overrides: overrides))
        #expect(again == job)
    }

    /// What the table refuses, the server refuses, naming the field: a value of the wrong type, one
    /// just outside the range, and a field the method does not read.
    @Test(arguments: Method.allCases)
    func theServerRefusesWhatTheTableRefuses(method: Method) {
        for field in JobSchema.overridable {
            let name = "overrides.\(field.name)"
            guard field.applies(to: method) else {
                let e = problems(method, [field.name: .number(1)])
                #expect(e.map(\.field) == [name] && e.first?.reason.contains("applies to") == true, "\(method) \(field.name): \(e)")
                continue
            }
            let task: JobTask = field.group == .finetune ? .finetune : .pretrain
            if task == .finetune {
                let e = problems(method, [field.name: .number(0.5)])
                #expect(e.map(\.field) == [name] && e.first?.reason.contains("fine-tuning only") == true, "\(method) \(field.name): \(e)")
            }
            let wrongType: JSONValue = if case .text = field.kind { .number(1) } else if case .choice = field.kind { .number(1) } else { .string("x") }
            #expect(problems(method, [field.name: wrongType], task: task).map(\.field) == [name], "\(method) \(field.name) as a string")
            for outside in Self.outside(field.kind) {
                #expect(problems(method, [field.name: outside], task: task).map(\.field) == [name], "\(method) \(field.name) = \(outside)")
            }
            if !field.nullable {
                #expect(problems(method, [field.name: .null], task: task).map(\.field) == [name], "\(method) \(field.name) = null")
            }
        }
    }

    /// Values just past each end of a field's range.
    static func outside(_ kind: JobField.Kind) -> [JSONValue] {
        switch kind {
        case .integer(let r): [.number(Double(r.lowerBound) - 1), .number(Double(r.upperBound) + 1), .number(Double(r.lowerBound) + 0.5)]
        case .number(let i):
            [.number(i.lowerOpen ? i.lower : i.lower.nextDown), .number(i.upperOpen ? i.upper : i.upper.nextUp)]
        case .boolean: [.number(0)]
        case .choice: [.string("neither")]
        case .integers(let each, let count):
            [.array(Array(repeating: .number(Double(each.lowerBound)), count: count.upperBound + 1)), .array([]),
             .array([.number(Double(each.upperBound) + 1)])]
        case .text: []
        case .checkpoint: [.object([:]), .object(["job": .string("j1"), "step": .number(0)]), .object(["job": .string("j1"), "weights": .string("w")])]
        }
    }

    /// The rendered JSON Schema lists exactly the table, with each field's type, range and methods.
    @Test func theJSONSchemaIsTheTable() throws {
        guard case .object(let root) = JobSchema.jsonSchema(), case .object(let top)? = root["properties"],
              case .object(let overrides)? = top["overrides"], case .object(let props)? = overrides["properties"] else {
            Issue.record("no properties")
            return
        }
        #expect(Set(props.keys) == Set(JobSchema.overridable.map(\.name)))
        #expect(Set(top.keys) == Set(["method", "preset", "dataset", "overrides"] + JobSchema.fields.filter { $0.group == .request }.map(\.name)))
        guard case .object(let grouping)? = props["grouping"], case .object(let ratio)? = props["mask_ratio"],
              case .object(let depths)? = props["depths"] else { Issue.record("missing fields"); return }
        #expect(grouping["enum"] == .array([.string("search"), .string("fixed")]) && grouping["x-methods"] == .array([.string("greenmim")]))
        #expect(ratio["exclusiveMinimum"] == .number(0) && ratio["exclusiveMaximum"] == .number(1) && ratio["type"] == .string("number"))
        #expect(depths["type"] == .string("array") && depths["maxItems"] == .number(Double(ModelConfig.maxStages)))
    }

    /// Every method has one preset behind each alias; the small ones are sized as promised: a
    /// ViT of width 192 (MAE, ConvMAE's last stage) or a Swin with C in 48…96, at 32 px, batch 64.
    @Test(arguments: Method.allCases) func everyMethodHasTinySmallAndDefault(method: Method) throws {
        let presets = Presets.forMethod(method)
        #expect(presets.filter(\.isTiny).count == 1 && presets.filter(\.isSmall).count == 1 && presets.filter(\.isDefault).count == 1)
        let small = try Presets.resolve(method: method, preset: "small")
        #expect(small.isSmall && small.model.imageSize == 32 && small.recipe.defaultBatchSize == 64)
        switch method {
        case .mae, .convmae: #expect(small.model.encoderDim == 192)
        default: #expect((48...96).contains(small.model.embedDim))
        }
        #expect(throws: Never.self) { try small.model.validate() }
    }

    /// Defaults live once: the recipe's batch and crop scale, the bookkeeping constants.
    @Test func defaultsComeFromTheRecipe() throws {
        for preset in Presets.all {
            let job = try JobConfig.resolve(JobRequest(method: preset.model.method.rawValue, preset: preset.name))
            #expect(job.training.batchSize == preset.recipe.defaultBatchSize)
            #expect(job.training.cropScaleMin == preset.recipe.cropScaleMin)
            #expect(job.training.keepCheckpoints == TrainingConfig.defaultKeepCheckpoints)
            #expect(job.training.totalSteps == TrainingConfig.defaultTotalSteps)
        }
    }
}
