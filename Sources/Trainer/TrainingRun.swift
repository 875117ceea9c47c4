import Config
import Foundation
import ImageData
import Models
import NN
import Optim
import Store
import TensorCore

/// What a slot asks a running job to do at its next step boundary.
enum StopRequest: Sendable {
    case cancel, pause
    /// The server is shutting down: checkpoint and go back to the queue.
    case shutdown
    /// Another trainer holds the job now: stop and write nothing more for it.
    case leaseLost
}

/// Trains one claimed job to its end, a stop request, or a failure. Runs on a slot's own
/// thread; everything it learns goes to the Store and the EventBus.
final class TrainingRun {
    let job: JobRecord
    let config: JobConfig
    let store: Store
    let bus: EventBus
    let options: TrainerOptions
    /// Passed with every write for the job; nil only where nothing else could train it (tests).
    let lease: Lease?
    let stopRequested: () -> StopRequest?

    private var pending: [MetricRecord] = []
    private var lastFlush = Date()
    private var progress: JobProgress

    init(job: JobRecord, config: JobConfig, store: Store, bus: EventBus, options: TrainerOptions, lease: Lease?,
         stopRequested: @escaping () -> StopRequest?) {
        self.lease = lease
        self.job = job
        self.config = config
        self.store = store
        self.bus = bus
        self.options = options
        self.stopRequested = stopRequested
        progress = JobProgress(step: job.step, loss: job.loss, lr: job.lr, imagesPerS: nil, etaS: nil)
    }

    /// Runs and moves the job to its next state; returns how many steps it trained.
    @discardableResult
    func run() -> Int {
        do {
            return try train()
        } catch StoreError.leaseLost {
            lostLease()
            return 0
        } catch {
            flushQuietly()
            finish(.failed, error: "\(error)")
            return 0
        }
    }

    private func train() throws -> Int {
        let t = config.training
        // A job submitted on another machine (a shared database) may ask for what this one lacks.
        let precision = t.precision ?? .fp32
        guard Precision.runnable.contains(precision) else { throw TrainingFailure.unsupportedPrecision(precision) }
        let bf16 = precision == .bf16
        let backbone = try ModelRegistry.make(config.model, seed: t.seed, decoderBlocks: config.finetune == nil)
        let objective: any Objective = config.finetune.map { Finetuning(backbone: backbone, settings: $0, seed: t.seed) }
            ?? Pretraining(model: backbone, batchSize: t.batchSize)
        let optimizer = AdamW(parameters: objective.namedParameters(), weightDecay: t.weightDecay, betas: (t.beta1, t.beta2),
                              noDecay: objective.noDecay, lrScale: objective.lrScale)
        // Recomputing trades speed for memory: GEMMs then round each weight as they read it.
        optimizer.keepsBF16Copies = !(t.recompute ?? false)
        // A clipping recipe's step holds every gradient at its peak; recomputing, little else.
        optimizer.holdsGradientBuffers = (t.recompute ?? false) && t.clipGrad != nil
        let schedule = WarmupCosineSchedule(baseLR: t.baseLR, minLR: t.minLR, warmupSteps: t.warmupSteps, totalSteps: t.totalSteps)
        // Masks draw from their own stream so data order and masks are independent.
        var rng = RandomGenerator(seed: t.seed ^ 0x6D61_736B_7374_726D)
        var step = 0, wallTime = 0.0
        if let resumed = try loadLatestCheckpoint() {
            try objective.loadState(resumed.weights)
            try optimizer.loadState(resumed.moments, stepCount: resumed.optimizerSteps)
            rng = resumed.rng
            step = resumed.step
            wallTime = resumed.wallTimeS
        } else if let source = config.initFrom {
            // A warm start: the weights of another job's checkpoint; the optimizer, schedule,
            // masks and data start afresh. Once this job has a checkpoint of its own, it
            // resumes from that instead.
            let weights = try initialWeights(source)
            do { try objective.loadInitial(weights) } catch {
                throw TrainingFailure.initUnavailable("\(source.summary) does not fit: \(error)")
            }
        }
        let data = try options.dataSource(config, step)
        defer { data.close() }
        var lastCheckpoint = step, smoothedStep: Double?
        let startStep = step
        while step < t.totalSteps {
            if let stop = stopRequested() {
                if stop == .leaseLost {
                    lostLease()
                    return step - startStep
                }
                if step > lastCheckpoint { try saveCheckpoint(step: step, model: objective, optimizer: optimizer, rng: rng, wall: wallTime, final: false) }
                flushQuietly()
                switch stop {
                case .cancel: finish(.cancelled, error: nil)
                case .pause: finish(.paused, error: nil)
                case .shutdown: finish(.queued, error: nil)
                case .leaseLost: break
                }
                return step - startStep
            }
            let started = DispatchTime.now().uptimeNanoseconds
            let batch = try data.next()
            let lr = schedule.lr(step: step)
            let lossTensor = try BF16.gemms(bf16) { try Recompute.blocks(t.recompute ?? false) { try objective.loss(batch, rng: &rng) } }
            let loss = lossTensor.item
            guard loss.isFinite else { throw TrainingFailure.nonFiniteLoss(step: step + 1, value: loss) }
            do {
                try BF16.gemms(bf16) { try optimizer.minimize(lossTensor, lr: lr, clipGrad: t.clipGrad) }
            } catch {
                throw TrainingFailure.nonFiniteGradient(step: step + 1)
            }
            step += 1
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            wallTime += seconds
            // Smoothed step time: fast to follow, calm enough for an ETA.
            smoothedStep = smoothedStep.map { 0.9 * $0 + 0.1 * seconds } ?? seconds
            let ips = Double(t.batchSize) / smoothedStep!
            progress = JobProgress(step: step, loss: Double(loss), lr: Double(lr), imagesPerS: ips,
                                   etaS: smoothedStep! * Double(t.totalSteps - step))
            let metric = MetricRecord(jobID: job.id, step: step, loss: Double(loss), lr: Double(lr), imagesPerS: ips, wallTimeS: wallTime)
            pending.append(metric)
            bus.publish(.metric(metric))
            bus.publish(.progress(jobID: job.id, progress, totalSteps: t.totalSteps))
            options.stepObserver?(job.id, step, batch.waitSeconds, seconds)
            if let tuning = objective as? Finetuning, options.bookkeeping,
               step % tuning.settings.evalEvery == 0 || step == t.totalSteps {
                try score(tuning, heldOut: data.heldOut, step: step)
            }
            let checkpointDue = options.bookkeeping && (step % t.checkpointEvery == 0 || step == t.totalSteps)
            if !options.bookkeeping {
                pending.removeAll(keepingCapacity: true)
            } else if checkpointDue || pending.count >= options.metricsBatchSteps || Date().timeIntervalSince(lastFlush) >= options.metricsBatchSeconds {
                try flush()
            }
            if checkpointDue {
                try saveCheckpoint(step: step, model: objective, optimizer: optimizer, rng: rng, wall: wallTime, final: step == t.totalSteps)
                lastCheckpoint = step
            }
        }
        finish(.succeeded, error: nil)
        return step - startStep
    }

    // MARK: - Bookkeeping

    private func flush() throws {
        progress.rssMB = ResidentMemory.currentMB()
        try store.record(progress: progress, metrics: pending, for: job.id, lease: lease)
        pending.removeAll(keepingCapacity: true)
        lastFlush = Date()
    }

    private func flushQuietly() { try? flush() }

    /// The job is another trainer's: what this run learned since its last write is dropped, as
    /// a crash would drop it; the new holder resumes from the last checkpoint.
    private func lostLease() {
        pending.removeAll()
        options.log("job \(job.id): lease lost to another trainer; stopped without writing more")
    }

    private func finish(_ state: JobState, error: String?) {
        do {
            let change = try store.transition(job.id, to: state, from: [.running], error: error, lease: lease)
            bus.publish(.state(jobID: job.id, change.state, error: error, eventID: change.eventID))
        } catch {
            options.log("job \(job.id): cannot record \(state.rawValue): \(error)")
        }
    }

    private func saveCheckpoint(step: Int, model: any Objective, optimizer: AdamW, rng: RandomGenerator,
                                wall: Double, final: Bool) throws {
        let ck = Checkpoint(config: config, step: step, optimizerSteps: optimizer.stepCount, rng: rng, wallTimeS: wall,
                            weights: model.stateDict(), moments: optimizer.state())
        let bytes = ck.encode()
        // A run that lost its job must not replace the new holder's file of the same step: check
        // the lease right before writing (the row insert after it is fenced in its transaction).
        if let lease { try store.renew(lease, leaseSeconds: options.leaseSeconds) }
        let relative = try options.checkpoints.write(bytes, job: job.id, step: step)
        let record = CheckpointRecord(jobID: job.id, step: step, path: relative, bytes: Int64(bytes.count),
                                      sha256: Checksum.sha256Hex(bytes), isFinal: final)
        let eventID = try store.addCheckpoint(record, lease: lease)
        bus.publish(.checkpoint(record, eventID: eventID))
        try prune()
    }

    /// Keeps the newest `keepCheckpoints` periodic checkpoints and the final one. The row goes
    /// first, then the file: a crash in between leaves an orphan file, never a dangling row.
    private func prune() throws {
        let periodic = try store.checkpoints(jobID: job.id).filter { !$0.isFinal }
        for old in periodic.dropLast(config.training.keepCheckpoints) {
            try store.deleteCheckpoint(jobID: job.id, step: old.step, lease: lease)
            options.checkpoints.remove(old.path)
        }
    }

    /// Scores a fine-tuning job on its held-out images and stores the result as an evaluation.
    /// A step scored before (by a run that stopped before its next checkpoint) is not scored
    /// again: the resumed run would compute the same numbers.
    private func score(_ tuning: Finetuning, heldOut: (any ImageDataset)?, step: Int) throws {
        guard let heldOut else { throw TrainingFailure.noHeldOutSplit }
        let scored = try store.evaluations(jobID: job.id).contains { e in
            e.step == step && (try? JSONDecoder().decode(FinetuneScore.self, from: Data(e.resultJSON.utf8))) != nil
        }
        if scored { return }
        let result = try tuning.score(heldOut, limit: tuning.settings.evalImages)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(result), as: UTF8.self)
        try flush()
        _ = try store.add(evaluation: EvaluationRecord(jobID: job.id, datasetID: result.dataset, step: step, resultJSON: json), lease: lease)
        bus.publish(.stored(jobID: job.id))
    }

    /// The weights of the checkpoint a warm start names, checked against its recorded sha256.
    func initialWeights(_ source: CheckpointReference) throws -> [String: Tensor] {
        let name = source.summary
        if let id = source.weights {
            guard let file = options.checkpoints.importedWeights(id) else {
                throw TrainingFailure.initUnavailable("\(name) are gone from the checkpoint directory's weights/ folder")
            }
            return try WeightsFile.read(path: file.path).weights
        }
        guard let job = source.job, let step = source.step, let record = try store.checkpoint(jobID: job, step: step) else {
            throw TrainingFailure.initUnavailable("\(name) is gone (the job or the checkpoint was deleted)")
        }
        guard let bytes = options.checkpoints.read(record.path), Checksum.sha256Hex(bytes) == record.sha256 else {
            throw TrainingFailure.initUnavailable("\(name) is missing or damaged on disk")
        }
        return try Checkpoint.decode(bytes).weights
    }

    /// The newest checkpoint whose file is intact (sha256 checked); older ones are tried when
    /// the newest is damaged, and none means a fresh start.
    func loadLatestCheckpoint() throws -> Checkpoint? {
        for record in try store.checkpoints(jobID: job.id).reversed() {
            guard let bytes = options.checkpoints.read(record.path) else {
                options.log("job \(job.id): checkpoint \(record.path) is missing; trying an older one")
                continue
            }
            guard Checksum.sha256Hex(bytes) == record.sha256 else {
                options.log("job \(job.id): checkpoint \(record.path) fails its sha256; trying an older one")
                continue
            }
            return try Checkpoint.decode(bytes)
        }
        return nil
    }
}

/// Why training stopped on its own.
public enum TrainingFailure: Error, CustomStringConvertible {
    case nonFiniteLoss(step: Int, value: Float)
    case nonFiniteGradient(step: Int)
    case unsupportedPrecision(Precision)
    /// The checkpoint `init` names cannot be loaded.
    case initUnavailable(String)
    /// A fine-tuning batch came without labels, or with a label outside the head's classes.
    case unlabelled
    case labelOutOfRange(Int, classes: Int)
    /// A fine-tuning job's data source has no held-out images to score on.
    case noHeldOutSplit

    public var description: String {
        switch self {
        case .initUnavailable(let why): "init: \(why)"
        case .unlabelled: "the dataset has no labels; fine-tuning needs a labelled dataset"
        case .labelOutOfRange(let label, let classes): "a label \(label) is outside the \(classes) classes the job was submitted with; the dataset changed since"
        case .noHeldOutSplit: "the job's data has no held-out split to score on"
        case .unsupportedPrecision(let p): "this machine cannot train in \(p.rawValue): its CPU lacks AVX512_BF16 and AMX"
        case .nonFiniteLoss(let step, let v): "the loss became \(v) at step \(step); lower base_lr or enable clip_grad"
        case .nonFiniteGradient(let step): "a gradient became non-finite at step \(step); lower base_lr or enable clip_grad"
        }
    }
}

/// The process's resident set size from /proc (Linux); nil elsewhere.
public enum ResidentMemory {
    public static func currentMB() -> Double? { field("VmRSS:") }

    private static func field(_ name: String) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let kb = line.split(separator: " ").dropFirst().first.flatMap { Double($0) }
            return kb.map { $0 / 1024 }
        }
        return nil
    }
}
