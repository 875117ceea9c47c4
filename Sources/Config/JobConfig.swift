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
    /// `init`: start from another job's checkpoint instead of the seed's initialisation.
    public var initFrom: CheckpointReference?
    /// `pretrain` (nil) or `finetune` (`JobTask`), checked by `JobConfig.resolve`.
    public var task: String?

    public init(method: String, preset: String? = nil, dataset: String? = nil, totalSteps: Int? = nil,
                batchSize: Int? = nil, seed: UInt64? = nil, task: String? = nil, overrides: [String: JSONValue]? = nil,
                initFrom: CheckpointReference? = nil) {
        self.task = task
        self.method = method
        self.preset = preset
        self.dataset = dataset
        self.totalSteps = totalSteps
        self.batchSize = batchSize
        self.seed = seed
        self.overrides = overrides
        self.initFrom = initFrom
    }

    enum CodingKeys: String, CodingKey {
        case method, preset, dataset, seed, overrides, task
        case totalSteps = "total_steps", batchSize = "batch_size", initFrom = "init"
    }
}

/// Where a job's weights start: a checkpoint of a pretraining job, `{"job": ID, "step": N}`
/// (without `step`, the job's newest; the server resolves it at submission, so the stored
/// configuration always names a step), or imported weights, `{"weights": ID}` (a weights file
/// in the checkpoint directory's `weights/` folder, as `mimserve import-hf` writes them).
public struct CheckpointReference: Codable, Sendable, Equatable {
    public var job: String?
    public var step: Int?
    public var weights: String?

    public init(job: String, step: Int? = nil) {
        self.job = job
        self.step = step
    }

    public init(weights: String) { self.weights = weights }

    enum CodingKeys: String, CodingKey, CaseIterable { case job, step, weights }

    /// Refuses keys other than job, step and weights, so a misspelt one is an error that names it.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self, takes: "init takes job and step, or weights")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        job = try c.decodeIfPresent(String.self, forKey: .job)
        step = try c.decodeIfPresent(Int.self, forKey: .step)
        weights = try c.decodeIfPresent(String.self, forKey: .weights)
    }

    /// How errors and logs name it.
    public var summary: String {
        if let weights { return "imported weights '\(weights)'" }
        return "job \(job ?? "?")'s checkpoint" + (step.map { " at step \($0)" } ?? "")
    }
}

/// What the server found for a job's `init`: the checkpoint's job (its preset, model and task)
/// and its step.
public struct InitCheckpoint: Sendable {
    public let preset: String
    public let model: ModelConfig
    public let task: JobTask
    public let step: Int

    public init(preset: String, model: ModelConfig, task: JobTask, step: Int) {
        self.preset = preset
        self.model = model
        self.task = task
        self.step = step
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
    /// The number format of GEMM inputs; nil in configurations stored before it existed (fp32).
    public var precision: Precision?
    /// Recompute each block's insides in the backward pass instead of keeping them (less memory,
    /// about a third more compute); nil in configurations stored before it existed (off).
    public var recompute: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case seed, hflip, beta1, beta2, precision, recompute
        case totalSteps = "total_steps", batchSize = "batch_size", baseLR = "base_lr", minLR = "min_lr"
        case warmupSteps = "warmup_steps", weightDecay = "weight_decay", clipGrad = "clip_grad"
        case cropScaleMin = "crop_scale_min", checkpointEvery = "checkpoint_every", keepCheckpoints = "keep_checkpoints"
        case dataWorkers = "data_workers"
    }

    public static let fieldNames = CodingKeys.allCases.map(\.rawValue)

    /// Defaults of a request that names none (the schema shows them; `JobConfig.resolve` applies them).
    public static let defaultTotalSteps = 1000
    public static let defaultKeepCheckpoints = 3
    public static let defaultDataWorkers = 2
    /// The default checkpoint interval is a quarter of the run, at most this many steps.
    public static let defaultCheckpointEveryMax = 500
}

/// The fully resolved configuration of a job, stored with it and in every checkpoint.
public struct JobConfig: Codable, Sendable, Equatable {
    public var method: Method
    /// The full preset name (aliases resolved).
    public var preset: String
    public var dataset: String
    public var model: ModelConfig
    public var training: TrainingConfig
    /// The checkpoint the weights start from (a warm start), with its step resolved; nil: from the seed.
    public var initFrom: CheckpointReference?
    /// nil in configurations stored before fine-tuning existed: pretraining.
    public var task: JobTask?
    /// The fine-tuning settings; present exactly when `task` is `finetune`.
    public var finetune: FinetuneConfig?
    /// The request as the client sent it, kept so that a clone can send it again and have what
    /// it left out (a learning rate scaled by batch, warm-up as a share of the steps) derived
    /// afresh from whatever it changes; nil for jobs stored before it was kept.
    public var request: JobRequest?

    public init(method: Method, preset: String, dataset: String, model: ModelConfig, training: TrainingConfig,
                initFrom: CheckpointReference? = nil, finetune: FinetuneConfig? = nil) {
        self.method = method
        self.preset = preset
        self.dataset = dataset
        self.model = model
        self.training = training
        self.initFrom = initFrom
        self.task = finetune == nil ? nil : .finetune
        self.finetune = finetune
    }

    enum CodingKeys: String, CodingKey {
        case method, preset, dataset, model, training, task, finetune, request
        case initFrom = "init"
    }

    /// What the job trains.
    public var jobTask: JobTask { task ?? .pretrain }

    /// What a step of this job costs (`ModelConfig.estimate`), for its task.
    public var estimate: CostEstimate {
        model.estimate(batch: training.batchSize, step: training.stepMemory, finetuneClasses: finetune?.classes)
    }

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
    /// `precisions` are those this machine runs (`bf16` needs AVX512_BF16 or AMX).
    /// `findCheckpoint` looks up an `init` checkpoint (nil step: the newest), or says why there is
    /// none; its job must be a pretraining job of the same method whose parameters have the
    /// shapes of this job's. Without a `preset`, a job with `init` takes its source's preset and
    /// model (with this request's overrides on top).
    /// `datasetClasses` gives the classes of a labelled dataset (nil: unlabelled or unknown);
    /// fine-tuning needs at least two.
    public static func resolve(_ r: JobRequest, datasetExists: (String) -> Bool = { _ in true },
                               datasetClasses: (String) -> Int? = { _ in 10 },
                               precisions: [Precision] = Precision.allCases,
                               maxJobMemory: Int? = nil, maxJobDisk: Int? = nil,
                               findCheckpoint: ((CheckpointReference) -> Result<InitCheckpoint, FieldError>)? = nil) throws(ConfigError) -> JobConfig {
        guard let method = Method(rawValue: r.method) else {
            throw ConfigError(errors: [FieldError("method", "unknown method '\(r.method)'; choose one of \(Method.allCases.map(\.rawValue).joined(separator: ", "))")])
        }
        guard let task = JobTask(rawValue: r.task ?? JobTask.pretrain.rawValue) else {
            throw ConfigError(errors: [FieldError("task", "must be one of \(JobTask.allCases.map(\.rawValue).joined(separator: ", ")), got '\(r.task ?? "")'")])
        }
        if let ref = r.initFrom, let reason = JobSchema.field(named: "init")?.problem(with: .object(JSONValue.object(of: ref))) {
            throw ConfigError(errors: [FieldError("init", reason)])
        }
        var errors: [FieldError] = []
        // The source of a warm start, looked up first: without a preset, the job is built like it.
        var source: InitCheckpoint?
        if let ref = r.initFrom, let findCheckpoint {
            switch findCheckpoint(ref) {
            case .failure(let problem): errors.append(problem)
            case .success(let found):
                if found.model.method != method {
                    errors.append(FieldError("init", "\(ref.summary) is a \(found.model.method.rawValue) model, not \(method.rawValue)"))
                } else if found.task != .pretrain {
                    errors.append(FieldError("init", "\(ref.summary) is a fine-tuned classifier; init names pretraining weights"))
                } else {
                    source = found
                }
            }
        }
        let preset = try Presets.resolve(method: method, preset: r.preset ?? source?.preset ?? "default")
        let recipe = preset.recipe, tune = FinetuneRecipe.of(method)
        let batch = r.batchSize ?? recipe.defaultBatchSize
        let total = r.totalSteps ?? TrainingConfig.defaultTotalSteps
        var training = TrainingConfig(
            totalSteps: total, batchSize: batch, seed: r.seed ?? 0, baseLR: recipe.peakLR(batch: max(batch, 1)),
            minLR: recipe.absoluteLR == nil ? recipe.minLR * Float(max(batch, 1)) / Float(recipe.lrBatchDivisor) : recipe.minLR,
            warmupSteps: Int((recipe.warmupFraction * Float(total)).rounded()),
            weightDecay: recipe.weightDecay, beta1: recipe.beta1, beta2: recipe.beta2, clipGrad: recipe.clipGrad,
            cropScaleMin: recipe.cropScaleMin, hflip: true,
            checkpointEvery: max(1, min(TrainingConfig.defaultCheckpointEveryMax, total / 4)),
            keepCheckpoints: TrainingConfig.defaultKeepCheckpoints, dataWorkers: TrainingConfig.defaultDataWorkers,
            precision: .fp32, recompute: false)
        let dataset = r.dataset ?? "synthetic"
        var finetune: FinetuneConfig?
        if task == .finetune {
            training.baseLR = tune.peakLR(batch: max(batch, 1), preset: recipe)
            training.minLR = min(tune.minLR, training.baseLR)
            training.warmupSteps = Int((tune.warmupFraction * Float(total)).rounded())
            training.weightDecay = tune.weightDecay
            training.beta2 = tune.beta2
            training.clipGrad = nil
            training.cropScaleMin = recipe.finetuneCropScaleMin ?? tune.cropScaleMin
            finetune = FinetuneConfig(
                pool: .mean, layerDecay: tune.layerDecay, labelSmoothing: tune.labelSmoothing, dropPath: tune.dropPath,
                mixup: 0, cutmix: 0, evalEvery: training.checkpointEvery, evalImages: FinetuneConfig.defaultEvalImages,
                valFraction: FinetuneConfig.defaultValFraction, classes: 0,
                heldOut: HeldOutSplit.candidates(for: dataset).first(where: datasetExists))
        }
        var model = source?.model ?? preset.model
        if let overrides = r.overrides {
            (model, training, finetune) = apply(overrides, method: method, model: model, training: training, finetune: finetune,
                                                errors: &errors)
        }
        if !datasetExists(dataset) { errors.append(FieldError("dataset", "no dataset '\(dataset)'; GET /v1/datasets lists them")) }
        errors += training.problems()
        if let p = training.precision, !precisions.contains(p) {
            errors.append(FieldError("overrides.precision", "this machine runs \(precisions.map(\.rawValue).joined(separator: ", ")) only: \(p.rawValue) GEMMs need a CPU with AVX512_BF16 or AMX (GET /v1/system)"))
        }
        do { try model.validate() } catch { errors += error.errors.map { FieldError("overrides.\($0.field)", $0.reason) } }
        if var f = finetune, datasetExists(dataset) {
            if let classes = datasetClasses(dataset), classes >= 2 {
                f.classes = classes
            } else {
                errors.append(FieldError("dataset", "'\(dataset)' has no labels; fine-tuning needs a labelled dataset (fashion-mnist, or a folder with one subfolder per class)"))
            }
            if !method.pools.contains(f.pool) || f.pool == .none {
                errors.append(FieldError("overrides.pool", "\(method.rawValue) pools its encoder by \(method.pools.filter { $0 != .none }.map(\.rawValue).joined(separator: " or ")), not \(f.pool.rawValue)"))
            }
            finetune = f
        }
        var initFrom = r.initFrom
        if let ref = r.initFrom, let found = source {
            if errors.isEmpty, let difference = model.weightShapeDifference(from: found.model) {
                errors.append(FieldError("init", "its weights do not fit this job's model: \(difference)"))
            }
            if ref.job != nil { initFrom?.step = found.step }
        }
        if !errors.isEmpty { throw ConfigError(errors: errors) }
        if let limit = maxJobMemory, let problem = Self.memoryProblem(model, batch: batch, step: training.stepMemory,
                                                                                  finetuneClasses: finetune?.classes, limit: limit) {
            throw ConfigError(errors: [problem])
        }
        if let limit = maxJobDisk {
            let each = model.estimate(batch: 1, finetuneClasses: finetune?.classes).checkpointBytes, kept = training.keepCheckpoints + 1
            if each.multipliedReportingOverflow(by: kept).partialValue > limit || each > limit / kept {
                let gb = { (b: Int) in String(format: "%.2f GB", Double(b) / Double(1 << 30)) }
                throw ConfigError(errors: [FieldError("overrides.keep_checkpoints",
                    "\(kept) checkpoints of \(gb(each)) each need \(gb(each * kept)); the limit is \(gb(limit)) (--max-job-disk)")])
            }
        }
        return JobConfig(method: method, preset: preset.name, dataset: dataset, model: model, training: training, initFrom: initFrom,
                         finetune: finetune)
    }

    static func memoryProblem(_ model: ModelConfig, batch: Int, step: StepMemory, finetuneClasses: Int?, limit: Int) -> FieldError? {
        let estimate = model.estimate(batch: batch, step: step, finetuneClasses: finetuneClasses)
        guard estimate.peakBytes > limit else { return nil }
        func gb(_ bytes: Int) -> String { String(format: "%.2f GB", Double(bytes) / Double(1 << 30)) }
        let fixed = model.estimate(batch: 0, step: step, finetuneClasses: finetuneClasses).peakBytes
        let perImage = max(1, model.estimate(batch: 1, step: step, finetuneClasses: finetuneClasses).peakBytes - fixed)
        let fits = (limit - fixed) / perImage
        let need = "this job needs about \(gb(estimate.peakBytes)) (weights and optimizer \(gb(estimate.weightBytes + estimate.optimizerBytes)), "
            + "activations \(gb(estimate.activationBytes)) at batch \(batch)); the limit is \(gb(limit)) (--max-job-memory)"
        if fits >= 1 { return FieldError("batch_size", need + "; a batch of at most \(fits) fits") }
        return FieldError("preset", need + "; the model does not fit even at batch 1: choose a smaller preset or widths")
    }

    /// Sets each override on the model, training or fine-tuning config through their JSON field
    /// names. Each value is checked against its `JobSchema` field first (type, range, the methods
    /// and task it applies to), so every problem names its field and says what the field takes.
    static func apply(_ overrides: [String: JSONValue], method: Method, model: ModelConfig, training: TrainingConfig,
                      finetune: FinetuneConfig?, errors: inout [FieldError]) -> (ModelConfig, TrainingConfig, FinetuneConfig?) {
        var modelFields = JSONValue.object(of: model), trainingFields = JSONValue.object(of: training)
        var finetuneFields = finetune.map { JSONValue.object(of: $0) } ?? [:]
        let before = errors.count
        for (key, value) in overrides.sorted(by: { $0.key < $1.key }) {
            let name = "overrides.\(key)"
            guard let field = JobSchema.field(named: key) else {
                let reason = key == "method" ? "the method is chosen by the top-level 'method' field"
                    : "unknown field; overridable: \(JobSchema.overridable.map(\.name).sorted().joined(separator: ", "))"
                errors.append(FieldError(name, reason))
                continue
            }
            switch field.group {
            case .request:
                errors.append(FieldError(name, "set \(key) at the top level of the request, not in overrides"))
            case _ where !field.applies(to: method):
                let to = (field.methods ?? []).map(\.rawValue).joined(separator: ", ")
                errors.append(FieldError(name, "applies to \(to) only, not \(method.rawValue)"))
            case .finetune where finetune == nil:
                errors.append(FieldError(name, "applies to fine-tuning only (\"task\": \"finetune\")"))
            case .model, .training, .finetune:
                if let reason = field.problem(with: value) {
                    errors.append(FieldError(name, reason))
                } else {
                    switch field.group {
                    case .model: modelFields[key] = value
                    case .training: trainingFields[key] = value
                    default: finetuneFields[key] = value
                    }
                }
            }
        }
        guard errors.count == before else { return (model, training, finetune) }
        func decode<T: Decodable>(_ fields: [String: JSONValue], as: T.Type, fallback: T) -> T {
            do {
                return try JSONDecoder().decode(T.self, from: JSONEncoder().encode(fields))
            } catch {
                // The schema checked every value above; a value it let through that the struct
                // cannot hold is a bug in the table, reported rather than crashed on.
                errors.append(FieldError("overrides", "cannot apply: \(error)"))
                return fallback
            }
        }
        var tuned = finetune.map { decode(finetuneFields, as: FinetuneConfig.self, fallback: $0) }
        // Scoring follows the checkpoint interval unless set.
        if var t = tuned, overrides["eval_every"] == nil, let every = overrides["checkpoint_every"], case .number(let n) = every {
            t.evalEvery = Int(n)
            tuned = t
        }
        return (decode(modelFields, as: ModelConfig.self, fallback: model),
                decode(trainingFields, as: TrainingConfig.self, fallback: training), tuned)
    }
}

extension TrainingConfig {
    /// Ranges come from `JobSchema`; what relates two fields is checked here.
    func problems() -> [FieldError] {
        let values = JSONValue.object(of: self)
        var e = JobSchema.problems(in: values, group: .request) + JobSchema.problems(in: values, group: .training, prefix: "overrides.")
        guard e.isEmpty else { return e }
        if minLR > baseLR { e.append(FieldError("overrides.min_lr", "must be at most base_lr \(baseLR), got \(minLR)")) }
        if warmupSteps > totalSteps { e.append(FieldError("overrides.warmup_steps", "must be at most total_steps \(totalSteps), got \(warmupSteps)")) }
        return e
    }
}

/// The number format of a job's GEMM inputs. `bf16` rounds both operands to bfloat16 and sums
/// in fp32; weights, optimizer state, norms, softmax, reductions and the loss stay fp32.
public enum Precision: String, Codable, Sendable, CaseIterable {
    case fp32, bf16
}
