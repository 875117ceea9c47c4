import ArgumentParser
import Config
import Foundation
import ImageData
import Models
import Store
import Trainer

/// `mimserve-bench quality --minutes M`: what pretraining buys, per method, in equal CPU time.
/// For each method, its `small` preset (or `--preset`) on Fashion-MNIST:
///   1. pretrains for M minutes;
///   2. scores the encoder with k-NN and a linear probe (against raw pixels and a random
///      encoder, `Evaluator`);
///   3. fine-tunes it for M minutes and scores top-1 on the test split;
///   4. fine-tunes the same classifier from scratch for 2·M minutes (the pretraining's time too):
///      twice the steps of step 3, whose step costs the same.
/// A job's length in steps is its minutes times the step rate measured on a few calibration
/// steps of the same task, so the schedule ends when the time does. Every method's calibrations
/// run first, before any long job: the machine must be idle for those first minutes; after them
/// the step counts are fixed, and a busier machine only makes the run take longer. One JSON line
/// per method and a table.
struct QualityBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quality", abstract: "Pretrain, probe and fine-tune each method for M CPU-minutes against baselines.")

    @Option(help: "Minutes of pretraining (and of fine-tuning; the from-scratch fine-tune gets twice).") var minutes = 10.0
    @Option(help: "Comma-separated methods (default: all six).") var methods = Method.allCases.map(\.rawValue).joined(separator: ",")
    @Option(help: "Preset (or alias) of every method.") var preset = "small"
    @Option(help: "Training dataset (labelled).") var dataset = "fashion-mnist"
    @Option(help: "Held-out dataset for scores.") var test = "fashion-mnist-test"
    @Option(help: "Images the k-NN memory and the probe fit on.") var evalTrain = 10_000
    @Option(help: "Images scored (k-NN, probe and fine-tunes).") var evalTest = 2_000
    @Option(help: "Seed of every job.") var seed: UInt64 = 0
    @Option(help: "Steps timed to set each job's length (after one warm-up step).") var calibrationSteps = 8
    @Option(help: "Pretraining base rate per 256 images instead of the preset's (a sweep).") var blr: Float?
    @Option(name: .customLong("set"), parsing: .singleValue,
            help: "A pretraining override KEY=VALUE (repeatable; a sweep): batch_size, warmup_steps, mask_ratio, or any other override.")
    var pretrainOverrides: [String] = []
    @Option(help: "Pretraining steps instead of the calibrated minutes (a sweep that does not depend on the machine's load).")
    var pretrainSteps: Int?
    @Flag(help: "Pretrain and probe only: no fine-tunes (a sweep).") var probeOnly = false
    @Flag(help: "No k-NN and probe (a fine-tuning sweep).") var noProbe = false
    @Option(name: .customLong("finetune-blrs"), help: "Comma-separated fine-tuning base rates per 256 images, each fine-tuned from the one pretraining and from scratch (a sweep); default: the preset's.")
    var finetuneBLRs: String?

    /// `--set` pairs as overrides; a value is a number where it reads as one.
    func parsedOverrides() throws -> [String: JSONValue] {
        try Dictionary(pretrainOverrides.map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--set wants KEY=VALUE, got \(pair)") }
            return (parts[0], Double(parts[1]).map(JSONValue.number) ?? .string(parts[1]))
        }, uniquingKeysWith: { _, last in last })
    }

    func validate() throws {
        _ = try parsedOverrides()
        if let n = pretrainSteps, n < 1 { throw ValidationError("--pretrain-steps must be at least 1, got \(n)") }
        if pretrainSteps != nil && !probeOnly { throw ValidationError("--pretrain-steps is for sweeps: use it with --probe-only") }
    }

    func run() throws {
        let registry = DatasetRegistry()
        guard registry.exists(dataset), registry.exists(test) else {
            throw ValidationError("datasets \(dataset) and \(test) must be installed (Debian's dataset-fashion-mnist; `make run` installs it)")
        }
        let runs = try methods.split(separator: ",").map(String.init).map { name in
            guard let method = Method(rawValue: name) else { throw ValidationError("unknown method \(name)") }
            return try QualityRun(bench: self, method: method, registry: registry)
        }
        let budgets = try runs.map { try $0.calibrate() }
        var rows: [Record] = []
        for (run, budget) in zip(runs, budgets) {
            let r = try run.measure(budget)
            Report.emit(r)
            rows.append(r)
        }
        Report.table(rows, columns: ["method", "preset", "minutes", "pretrain_steps", "knn_encoder", "knn_raw", "knn_random",
                                     "probe_encoder", "probe_raw", "probe_random", "finetune_top1", "scratch_top1"])
    }
}

/// One method's runs, in a store and checkpoint folder of their own.
struct QualityRun {
    let bench: QualityBench
    let method: Method
    let registry: DatasetRegistry
    let dir: URL
    let store: Store
    let pool: TrainerPool

    init(bench: QualityBench, method: Method, registry: DatasetRegistry) throws {
        self.bench = bench
        self.method = method
        self.registry = registry
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("mimserve-quality-\(UUID().uuidString)")
        store = try Store(path: dir.appendingPathComponent("mimserve.sqlite").path, migrations: MigrationSet.locate())
        let options = TrainerOptions(slots: 1, checkpoints: CheckpointDirectory(root: dir.appendingPathComponent("checkpoints")),
                                     dataSource: ImageDataSource.make(registry: registry), log: { _ in })
        pool = TrainerPool(store: store, bus: EventBus(), options: options)
    }

    /// Steps of each task that fit the bench's minutes.
    struct Budget {
        let pretrain: Int
        let finetune: Int
    }

    /// Times a few steps of each task and starts the pool that `measure` goes on using. A
    /// fine-tuning step costs the same from scratch as from a pretrained encoder, so its
    /// calibration needs no pretraining first.
    func calibrate() throws -> Budget {
        try pool.start()
        if let fixed = bench.pretrainSteps {
            _ = try config(.pretrain, steps: fixed, initFrom: nil) // a bad --set fails here, before any training
            return Budget(pretrain: fixed, finetune: 0)
        }
        func steps(_ task: JobTask) throws -> Int {
            let calibration = try run(config(task, steps: bench.calibrationSteps + 1, initFrom: nil))
            let secondsPerStep = calibration.seconds / Double(bench.calibrationSteps)
            return max(1, Int(bench.minutes * 60 / secondsPerStep))
        }
        let budget = Budget(pretrain: try steps(.pretrain), finetune: try steps(.finetune))
        FileHandle.standardError.write(Data("\(method.rawValue): \(budget.pretrain) pretraining and \(budget.finetune) fine-tuning steps in \(bench.minutes) min\n".utf8))
        return budget
    }

    func measure(_ budget: Budget) throws -> Record {
        defer {
            pool.shutdown()
            try? FileManager.default.removeItem(at: dir)
        }
        let m = bench.minutes
        let pretrainSteps = budget.pretrain
        let pretrained = try finished(config(.pretrain, steps: pretrainSteps, initFrom: nil))
        var r = Record()
        if let blr = bench.blr { r["blr"] = Double(blr) }
        for (key, value) in try bench.parsedOverrides() {
            if case .number(let n) = value { r[key] = n } else if case .string(let text) = value { r[key] = text }
        }
        if !bench.noProbe {
            let evaluation = try evaluate(pretrained)
            r["knn_encoder"] = evaluation.knn.encoder; r["knn_raw"] = evaluation.knn.rawPixels; r["knn_random"] = evaluation.knn.randomEncoder
            r["probe_encoder"] = evaluation.linearProbe.encoder; r["probe_raw"] = evaluation.linearProbe.rawPixels
            r["probe_random"] = evaluation.linearProbe.randomEncoder
            r["eval_train"] = evaluation.trainCount; r["eval_test"] = evaluation.testCount
        }
        r["suite"] = "quality"; r["method"] = method.rawValue; r["preset"] = try resolve(.pretrain, steps: 1, initFrom: nil, overrides: [:]).preset
        r["minutes"] = m; r["dataset"] = bench.dataset
        r["pretrain_steps"] = pretrainSteps
        if !bench.probeOnly {
            let rates: [Float?] = bench.finetuneBLRs.map { $0.split(separator: ",").map { Float($0) } } ?? [nil]
            for rate in rates {
                let suffix = rates.count > 1 ? "@\(rate.map { String($0) } ?? "preset")" : ""
                let tuneSteps = budget.finetune
                let tuned = try finished(config(.finetune, steps: tuneSteps, initFrom: CheckpointReference(job: pretrained), finetuneBLR: rate))
                // Twice the steps of the same calibration, not a second one whose noise (a few
                // per cent) would tilt the comparison either way.
                let scratchSteps = 2 * tuneSteps
                let scratch = try finished(config(.finetune, steps: scratchSteps, initFrom: nil, finetuneBLR: rate))
                r["finetune_steps" + suffix] = tuneSteps; r["scratch_steps" + suffix] = scratchSteps
                r["finetune_top1" + suffix] = try top1(tuned); r["scratch_top1" + suffix] = try top1(scratch)
            }
        }
        return r
    }

    /// `blr` (per 256 images) replaces the task's base rate; `--set` pairs apply to pretraining.
    func config(_ task: JobTask, steps: Int, initFrom: CheckpointReference?, finetuneBLR: Float? = nil) throws -> JobConfig {
        var overrides: [String: JSONValue] = ["checkpoint_every": .number(Double(steps))]
        if task == .finetune {
            overrides["eval_every"] = .number(Double(steps))
            overrides["eval_images"] = .number(Double(bench.evalTest))
        } else {
            overrides.merge(try bench.parsedOverrides()) { _, set in set }
        }
        if let blr = task == .finetune ? finetuneBLR : bench.blr {
            let batch = try resolve(task, steps: steps, initFrom: initFrom, overrides: overrides).training.batchSize
            overrides["base_lr"] = .number(Double(blr * Float(batch) / 256))
        }
        return try resolve(task, steps: steps, initFrom: initFrom, overrides: overrides)
    }

    func resolve(_ task: JobTask, steps: Int, initFrom: CheckpointReference?, overrides: [String: JSONValue]) throws -> JobConfig {
        // The batch is a field of the request itself, not an override.
        var overrides = overrides
        var batch: Int?
        if case .number(let n)? = overrides.removeValue(forKey: "batch_size") { batch = Int(n) }
        let source = initFrom.map { ref -> InitCheckpoint? in
            guard let id = ref.job, let job = try? store.job(id), let c = try? JobConfig.decode(job.configJSON),
                  let ck = try? store.latestCheckpoint(jobID: id) else { return nil }
            return InitCheckpoint(preset: c.preset, model: c.model, task: c.jobTask, step: ck.step)
        }
        return try JobConfig.resolve(
            JobRequest(method: method.rawValue, preset: initFrom == nil ? bench.preset : nil, dataset: bench.dataset, totalSteps: steps,
                       batchSize: batch, seed: bench.seed, task: task.rawValue, overrides: overrides, initFrom: initFrom),
            datasetExists: registry.exists, datasetClasses: { id in (try? registry.open(id).info).map(\.classes.count) },
            findCheckpoint: { _ in source.flatMap { $0 }.map { .success($0) } ?? .failure(FieldError("init", "no checkpoint")) })
    }

    /// Runs `config` to its end, says how long it took, and returns the job's id.
    func finished(_ config: JobConfig) throws -> String {
        let job = try run(config)
        let steps = config.training.totalSteps
        FileHandle.standardError.write(Data(String(format: "%@ %@%@: %d steps in %.1f min (%.0f ms/step)\n", method.rawValue,
                                                   config.jobTask.rawValue, config.initFrom == nil ? "" : " (init)",
                                                   steps, job.seconds / 60, 1000 * job.seconds / Double(steps)).utf8))
        return job.id
    }

    /// Trains a job to its end; its id and the seconds its steps took after the first.
    func run(_ config: JobConfig) throws -> (id: String, seconds: Double) {
        let id = try store.submit(NewJob(method: method.rawValue, preset: config.preset, configJSON: config.json(), datasetID: config.dataset,
                                         totalSteps: config.training.totalSteps)).job.id
        pool.notify()
        while try store.job(id)?.state.isTerminal != true { Thread.sleep(forTimeInterval: 0.05) }
        let job = try store.job(id)!
        guard job.state == .succeeded else { throw ValidationError("\(method.rawValue) job ended \(job.state.rawValue): \(job.error ?? "")") }
        let metrics = try store.metrics(jobID: id)
        let first = metrics.first?.wallTimeS ?? 0, last = metrics.last?.wallTimeS ?? 0
        return (id, last - first)
    }

    func evaluate(_ job: String) throws -> EvaluationResult {
        let record = try store.latestCheckpoint(jobID: job)!
        let file = try WeightsFile.read(path: pool.options.checkpoints.url(record.path).path)
        let model = try file.makeModel()
        let config = try JobConfig.decode(try store.job(job)!.configJSON)
        var options = EvaluationOptions()
        options.trainLimit = bench.evalTrain
        options.testLimit = bench.evalTest
        return try Evaluator(options: options).evaluate(model: model, config: config, train: try registry.open(bench.dataset),
                                                        test: try registry.open(bench.test))
    }

    func top1(_ job: String) throws -> Double {
        let score = try store.evaluations(jobID: job).last.map { try JSONDecoder().decode(FinetuneScore.self, from: Data($0.resultJSON.utf8)) }
        return score?.top1 ?? .nan
    }
}
