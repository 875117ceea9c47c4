import Foundation

/// A job submission as a client sends it (`POST /v1/jobs`). Everything but `method` has a
/// default from the preset and its recipe; `overrides` may set any model or training field.
public struct JobRequest: Codable, Sendable, Equatable {
    public var method: String
    public var preset: String?
    public var dataset: String?
    public var totalSteps: Int?
    public var batchSize: Int?
    public var seed: UInt64?
    public var overrides: [String: JSONValue]?

    public init(method: String, preset: String? = nil, dataset: String? = nil, totalSteps: Int? = nil,
                batchSize: Int? = nil, seed: UInt64? = nil, overrides: [String: JSONValue]? = nil) {
        self.method = method
        self.preset = preset
        self.dataset = dataset
        self.totalSteps = totalSteps
        self.batchSize = batchSize
        self.seed = seed
        self.overrides = overrides
    }

    enum CodingKeys: String, CodingKey {
        case method, preset, dataset, seed, overrides
        case totalSteps = "total_steps", batchSize = "batch_size"
    }
}

/// Optimisation, schedule, data and bookkeeping of a job: everything that is not the model.
public struct TrainingConfig: Codable, Sendable, Equatable {
    public var totalSteps: Int
    public var batchSize: Int
    public var seed: UInt64
    /// Peak learning rate after warm-up (the preset's recipe scaled by batch unless overridden).
    public var baseLR: Float
    public var minLR: Float
    public var warmupSteps: Int
    public var weightDecay: Float
    public var beta1: Float
    public var beta2: Float
    /// Global gradient-norm clip, or nil for none.
    public var clipGrad: Float?
    /// RandomResizedCrop's smallest area share (MAE 0.2, SimMIM 0.67).
    public var cropScaleMin: Float
    public var hflip: Bool
    /// Save a checkpoint every this many steps (and always at the end).
    public var checkpointEvery: Int
    /// Periodic checkpoints kept per job (the final one is always kept too).
    public var keepCheckpoints: Int
    /// Background threads decoding and augmenting images.
    public var dataWorkers: Int

    enum CodingKeys: String, CodingKey, CaseIterable {
        case seed, hflip, beta1, beta2
        case totalSteps = "total_steps", batchSize = "batch_size", baseLR = "base_lr", minLR = "min_lr"
        case warmupSteps = "warmup_steps", weightDecay = "weight_decay", clipGrad = "clip_grad"
        case cropScaleMin = "crop_scale_min", checkpointEvery = "checkpoint_every", keepCheckpoints = "keep_checkpoints"
        case dataWorkers = "data_workers"
    }

    public static let fieldNames = CodingKeys.allCases.map(\.rawValue)
}

/// The fully resolved configuration of a job, stored with it and in every checkpoint.
public struct JobConfig: Codable, Sendable, Equatable {
    public var method: Method
    /// The full preset name (aliases resolved).
    public var preset: String
    public var dataset: String
    public var model: ModelConfig
    public var training: TrainingConfig

    public func json() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: try! e.encode(self), as: UTF8.self)
    }

    public static func decode(_ json: String) throws -> JobConfig {
        try JSONDecoder().decode(JobConfig.self, from: Data(json.utf8))
    }
}

extension JobConfig {
    /// Resolves and validates a request: preset aliases, recipe defaults, overrides by field
    /// name. Throws every problem at once, each naming its field (`overrides.mask_ratio`, …).
    /// With `maxJobMemory`, a job whose estimated peak (`ModelConfig.estimate`) is larger is refused,
    /// naming `batch_size` (with the largest batch that fits) or, when no batch fits, the preset.
    /// With `maxJobDisk`, a job whose kept checkpoints (`keep_checkpoints` + the final one) would
    /// take more disk is refused, naming `overrides.keep_checkpoints`.
    public static func resolve(_ r: JobRequest, datasetExists: (String) -> Bool = { _ in true },
                               maxJobMemory: Int? = nil, maxJobDisk: Int? = nil) throws(ConfigError) -> JobConfig {
        guard let method = Method(rawValue: r.method) else {
            throw ConfigError(errors: [FieldError("method", "unknown method '\(r.method)'; choose one of \(Method.allCases.map(\.rawValue).joined(separator: ", "))")])
        }
        let preset = try Presets.resolve(method: method, preset: r.preset ?? "default")
        var errors: [FieldError] = []
        let batch = r.batchSize ?? (preset.isTiny ? 16 : 8)
        let total = r.totalSteps ?? 1000
        let recipe = preset.recipe
        var training = TrainingConfig(
            totalSteps: total, batchSize: batch, seed: r.seed ?? 0, baseLR: recipe.peakLR(batch: max(batch, 1)),
            minLR: recipe.absoluteLR == nil ? recipe.minLR * Float(max(batch, 1)) / Float(recipe.lrBatchDivisor) : recipe.minLR,
            warmupSteps: Int((recipe.warmupFraction * Float(total)).rounded()),
            weightDecay: recipe.weightDecay, beta1: recipe.beta1, beta2: recipe.beta2, clipGrad: recipe.clipGrad,
            cropScaleMin: method == .simmim ? 0.67 : 0.2, hflip: true,
            checkpointEvery: max(1, min(500, total / 4)), keepCheckpoints: 3, dataWorkers: 2)
        var model = preset.model
        if let overrides = r.overrides {
            (model, training) = apply(overrides, model: model, training: training, errors: &errors)
        }
        let dataset = r.dataset ?? "synthetic"
        if !datasetExists(dataset) { errors.append(FieldError("dataset", "no dataset '\(dataset)'; GET /v1/datasets lists them")) }
        errors += training.problems()
        do { try model.validate() } catch { errors += error.errors.map { FieldError("overrides.\($0.field)", $0.reason) } }
        if !errors.isEmpty { throw ConfigError(errors: errors) }
        if let limit = maxJobMemory, let problem = Self.memoryProblem(model, batch: batch, limit: limit) {
            throw ConfigError(errors: [problem])
        }
        if let limit = maxJobDisk {
            let each = model.estimate(batch: 1).checkpointBytes, kept = training.keepCheckpoints + 1
            if each.multipliedReportingOverflow(by: kept).partialValue > limit || each > limit / kept {
                let gb = { (b: Int) in String(format: "%.2f GB", Double(b) / Double(1 << 30)) }
                throw ConfigError(errors: [FieldError("overrides.keep_checkpoints",
                    "\(kept) checkpoints of \(gb(each)) each need \(gb(each * kept)); the limit is \(gb(limit)) (--max-job-disk)")])
            }
        }
        return JobConfig(method: method, preset: preset.name, dataset: dataset, model: model, training: training)
    }

    static func memoryProblem(_ model: ModelConfig, batch: Int, limit: Int) -> FieldError? {
        let estimate = model.estimate(batch: batch)
        guard estimate.peakBytes > limit else { return nil }
        func gb(_ bytes: Int) -> String { String(format: "%.2f GB", Double(bytes) / Double(1 << 30)) }
        let fixed = model.estimate(batch: 0).peakBytes, perImage = max(1, model.estimate(batch: 1).peakBytes - fixed)
        let fits = (limit - fixed) / perImage
        let need = "this job needs about \(gb(estimate.peakBytes)) (weights and optimizer \(gb(estimate.weightBytes + estimate.optimizerBytes)), "
            + "activations \(gb(estimate.activationBytes)) at batch \(batch)); the limit is \(gb(limit)) (--max-job-memory)"
        if fits >= 1 { return FieldError("batch_size", need + "; a batch of at most \(fits) fits") }
        return FieldError("preset", need + "; the model does not fit even at batch 1: choose a smaller preset or widths")
    }

    /// Sets each override on the model or training config through their JSON field names, so
    /// every documented field is overridable and a wrong type names its field.
    static func apply(_ overrides: [String: JSONValue], model: ModelConfig, training: TrainingConfig,
                      errors: inout [FieldError]) -> (ModelConfig, TrainingConfig) {
        var modelFields = JSONValue.object(of: model), trainingFields = JSONValue.object(of: training)
        for (key, value) in overrides.sorted(by: { $0.key < $1.key }) {
            if key == "method" {
                errors.append(FieldError("overrides.method", "the method is chosen by the top-level 'method' field"))
            } else if modelFields[key] != nil {
                modelFields[key] = value
            } else if trainingFields[key] != nil || key == "clip_grad" {
                trainingFields[key] = value
            } else {
                let known = (modelFields.keys.filter { $0 != "method" } + trainingFields.keys).sorted().joined(separator: ", ")
                errors.append(FieldError("overrides.\(key)", "unknown field; overridable: \(known)"))
            }
        }
        func decode<T: Decodable>(_ fields: [String: JSONValue], as: T.Type, fallback: T) -> T {
            do {
                return try JSONDecoder().decode(T.self, from: JSONEncoder().encode(fields))
            } catch let DecodingError.typeMismatch(type, context), let DecodingError.valueNotFound(type, context) {
                let field = context.codingPath.first?.stringValue ?? "?"
                errors.append(FieldError("overrides.\(field)", "expected \(JSONValue.describe(type))"))
            } catch let DecodingError.dataCorrupted(context) {
                let field = context.codingPath.first?.stringValue ?? "?"
                errors.append(FieldError("overrides.\(field)", context.debugDescription))
            } catch {
                errors.append(FieldError("overrides", "\(error)"))
            }
            return fallback
        }
        return (decode(modelFields, as: ModelConfig.self, fallback: model),
                decode(trainingFields, as: TrainingConfig.self, fallback: training))
    }
}

extension TrainingConfig {
    func problems() -> [FieldError] {
        var e: [FieldError] = []
        func check(_ ok: Bool, _ field: String, _ reason: @autoclosure () -> String) {
            if !ok { e.append(FieldError(field, reason())) }
        }
        check((1...10_000_000).contains(totalSteps), "total_steps", "must be in 1…10000000, got \(totalSteps)")
        check((1...4096).contains(batchSize), "batch_size", "must be in 1…4096, got \(batchSize)")
        let lrValid = baseLR.isFinite && baseLR > 0 && baseLR < 10
        check(lrValid, "overrides.base_lr", "must be in (0, 10), got \(baseLR)")
        if lrValid { check(minLR.isFinite && minLR >= 0 && minLR <= baseLR, "overrides.min_lr", "must be in [0, base_lr \(baseLR)], got \(minLR)") }
        check(warmupSteps >= 0 && warmupSteps <= totalSteps, "overrides.warmup_steps", "must be in 0…total_steps, got \(warmupSteps)")
        check(weightDecay.isFinite && weightDecay >= 0 && weightDecay < 10, "overrides.weight_decay", "must be in [0, 10), got \(weightDecay)")
        check(beta1 >= 0 && beta1 < 1, "overrides.beta1", "must be in [0, 1), got \(beta1)")
        check(beta2 >= 0 && beta2 < 1, "overrides.beta2", "must be in [0, 1), got \(beta2)")
        if let c = clipGrad { check(c.isFinite && c > 0, "overrides.clip_grad", "must be > 0 or null, got \(c)") }
        check(cropScaleMin > 0 && cropScaleMin <= 1, "overrides.crop_scale_min", "must be in (0, 1], got \(cropScaleMin)")
        check(checkpointEvery >= 1, "overrides.checkpoint_every", "must be ≥ 1, got \(checkpointEvery)")
        check((1...100).contains(keepCheckpoints), "overrides.keep_checkpoints", "must be in 1…100, got \(keepCheckpoints)")
        check((1...16).contains(dataWorkers), "overrides.data_workers", "must be in 1…16, got \(dataWorkers)")
        return e
    }
}
