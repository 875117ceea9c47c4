import Config
import Foundation
import ImageData
import Store
import Synchronization
import TensorCore
import Testing
@testable import Trainer

@Suite("Fine-tuning: configuration") struct FinetuneConfigTests {
    let labelled: (String) -> Int? = { ["synthetic": 10, "fashion-mnist": 10, "fashion-mnist-test": 10][$0] }

    func resolve(_ r: JobRequest, datasets: Set<String> = ["synthetic", "fashion-mnist", "fashion-mnist-test", "photos"],
                 init found: InitCheckpoint? = nil) throws(ConfigError) -> JobConfig {
        try JobConfig.resolve(r, datasetExists: datasets.contains, datasetClasses: labelled,
                              findCheckpoint: { _ in found.map { .success($0) } ?? .failure(FieldError("init.job", "no job")) })
    }

    func fields(_ r: JobRequest, init found: InitCheckpoint? = nil) -> [String] {
        do { _ = try resolve(r, init: found); return [] } catch { return error.errors.map(\.field) }
    }

    /// The papers' recipe: AdamW β2 0.999, weight decay 0.05, no clipping, crops from 8 %, label
    /// smoothing and drop path 0.1, layer decay 0.65 for ViTs and 0.9 for SimMIM's Swin, the
    /// base rate per 256 images; the held-out split is the dataset's own when it has one.
    @Test func defaultsComeFromThePapersRecipe() throws {
        let mae = try resolve(JobRequest(method: "mae", preset: "mae_vit_small_patch16_dec512d8b_224", dataset: "fashion-mnist",
                                         totalSteps: 100, batchSize: 64, task: "finetune"))
        let f = try #require(mae.finetune)
        #expect(mae.jobTask == .finetune && f.classes == 10 && f.heldOut == "fashion-mnist-test")
        #expect(f.layerDecay == 0.65 && f.labelSmoothing == 0.1 && f.dropPath == 0.1 && f.mixup == 0 && f.cutmix == 0 && f.pool == .mean)
        let t = mae.training
        #expect(t.baseLR == 5e-4 * 64 / 256 && t.minLR == 1e-6 && t.warmupSteps == 5 && t.weightDecay == 0.05)
        #expect(t.beta2 == 0.999 && t.clipGrad == nil && t.cropScaleMin == 0.08 && f.evalEvery == t.checkpointEvery)
        let swin = try resolve(JobRequest(method: "simmim", preset: "tiny", totalSteps: 40, task: "finetune",
                                          overrides: ["checkpoint_every": .number(7)]))
        #expect(swin.finetune?.layerDecay == 0.9 && swin.finetune?.heldOut == nil && swin.finetune?.evalEvery == 7)
        #expect(swin.training.baseLR == 1e-3, "the tiny presets keep their fixed rate")
        let pretrain = try resolve(JobRequest(method: "mae", preset: "tiny"))
        #expect(pretrain.finetune == nil && pretrain.task == nil && !pretrain.json().contains("finetune"))
    }

    @Test func overridesReachTheFinetuneSettings() throws {
        let c = try resolve(JobRequest(method: "mae", preset: "tiny", task: "finetune", overrides: [
            "pool": .string("cls"), "mixup": .number(0.8), "cutmix": .number(1), "layer_decay": .number(0.75),
            "eval_every": .number(3), "eval_images": .number(100), "drop_path": .number(0.2), "label_smoothing": .number(0),
            "val_fraction": .number(0.25),
        ]))
        let f = try #require(c.finetune)
        #expect(f.pool == Pooling.cls && f.mixup == 0.8 && f.cutmix == 1 && f.layerDecay == 0.75 && f.evalEvery == 3)
        #expect(f.evalImages == 100 && f.dropPath == 0.2 && f.labelSmoothing == 0 && f.valFraction == 0.25)
    }

    /// Each problem names its field: the task, fine-tuning settings on a pretraining job, a
    /// pooling the encoder lacks, an unlabelled dataset, and a fine-tuning job as init.
    @Test func everyProblemNamesItsField() {
        #expect(fields(JobRequest(method: "mae", task: "classify")) == ["task"])
        #expect(fields(JobRequest(method: "mae", preset: "tiny", overrides: ["label_smoothing": .number(0.1)])) == ["overrides.label_smoothing"])
        #expect(fields(JobRequest(method: "simmim", preset: "tiny", task: "finetune", overrides: ["pool": .string("cls")])) == ["overrides.pool"])
        #expect(fields(JobRequest(method: "mae", preset: "tiny", task: "finetune", overrides: ["layer_decay": .number(0)])) == ["overrides.layer_decay"])
        #expect(fields(JobRequest(method: "mae", preset: "tiny", dataset: "photos", task: "finetune")) == ["dataset"])
        let tiny = Presets.named("mae_vit_tiny_patch4_dec32d1b_32")!
        let tuned = InitCheckpoint(preset: tiny.name, model: tiny.model, task: .finetune, step: 4)
        #expect(fields(JobRequest(method: "mae", task: "finetune", initFrom: CheckpointReference(job: "j1")), init: tuned) == ["init"])
    }

    /// With init and no preset, the job is built like its source (preset and model).
    @Test func initWithoutAPresetTakesTheSources() throws {
        var model = Presets.named("mae_vit_tiny_patch4_dec32d1b_32")!.model
        model.depths = [3]
        let source = InitCheckpoint(preset: "mae_vit_tiny_patch4_dec32d1b_32", model: model, task: .pretrain, step: 6)
        let c = try resolve(JobRequest(method: "mae", task: "finetune", initFrom: CheckpointReference(job: "j1")), init: source)
        #expect(c.preset == "mae_vit_tiny_patch4_dec32d1b_32" && c.model.depths == [3] && c.initFrom?.step == 6)
    }
}

@Suite("Fine-tuning jobs", .serialized) struct FinetuneJobTests {
    func checkpoint(_ h: Harness, _ id: String) throws -> Checkpoint {
        let row = try #require(try h.store.latestCheckpoint(jobID: id))
        return try Checkpoint.decode([UInt8](Data(contentsOf: h.pool.options.checkpoints.url(row.path))))
    }

    func scores(_ h: Harness, _ id: String) throws -> [(step: Int, score: FinetuneScore)] {
        try h.store.evaluations(jobID: id).map { ($0.step, try JSONDecoder().decode(FinetuneScore.self, from: Data($0.resultJSON.utf8))) }
    }

    /// Every method's encoder fine-tunes on labelled images from the real loader: the job
    /// succeeds, scores top-1 on its held-out images at every eval_every and at the end, and its
    /// checkpoints hold the encoder and the head, not the decoder.
    @Test(arguments: Method.allCases) func everyMethodFineTunesAndIsScored(method: Method) async throws {
        let h = try Harness(realData: true)
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit(method.rawValue, steps: 6, batch: 8, overrides: [
            "eval_every": .number(4), "eval_images": .number(12), "val_fraction": .number(0.1), "checkpoint_every": .number(3),
        ], task: "finetune")
        let job = try await h.wait(id, for: [.succeeded, .failed])
        #expect(job.state == .succeeded, "\(job.error ?? "")")
        let s = try scores(h, id)
        #expect(s.map(\.step) == [4, 6] && s.allSatisfy { $0.score.images == 12 && $0.score.classes == 10 && (0...1).contains($0.score.top1) })
        #expect(s.allSatisfy { $0.score.loss.isFinite && $0.score.dataset == "synthetic" })
        let names = try checkpoint(h, id).weights.keys
        #expect(names.contains("head.weight") && !names.contains { $0.contains("decoder") })
    }

    /// The acceptance test of resume for fine-tuning, with mixup, CutMix and drop path on: 16
    /// steps straight equal 8, pause, resume, 8 more — losses, scores, weights and moments.
    @Test func aResumedFineTuneEqualsTheUninterruptedOne() async throws {
        let pauseAt = Mutex<(id: String?, pool: TrainerPool?)>((nil, nil))
        let h = try Harness(realData: true, observer: { id, step, _, _ in
            let (target, pool) = pauseAt.withLock { ($0.id, $0.pool) }
            if id == target && step == 8 { _ = try? pool?.pause(id) }
        })
        pauseAt.withLock { $0.pool = h.pool }
        try h.pool.start()
        defer { h.pool.shutdown() }
        let overrides: [String: JSONValue] = [
            "checkpoint_every": .number(5), "eval_every": .number(6), "eval_images": .number(16),
            "mixup": .number(0.8), "cutmix": .number(1), "drop_path": .number(0.3),
        ]
        let straight = try h.submit("mae", steps: 16, batch: 8, overrides: overrides, task: "finetune")
        try await h.wait(straight, for: [.succeeded])
        let interrupted = try h.submit("mae", steps: 16, batch: 8, overrides: overrides, task: "finetune")
        pauseAt.withLock { $0.id = interrupted }
        let paused = try await h.wait(interrupted, for: [.paused, .succeeded])
        #expect(paused.state == .paused && paused.step == 8)
        pauseAt.withLock { $0.id = nil }
        try h.pool.resume(interrupted)
        try await h.wait(interrupted, for: [.succeeded])
        let a = try h.store.metrics(jobID: straight).map(\.loss), b = try h.store.metrics(jobID: interrupted).map(\.loss)
        #expect(a.count == 16 && a == b, "first difference at step \((a.indices.first { a[$0] != b[$0] } ?? -1) + 1)")
        let sa = try scores(h, straight), sb = try scores(h, interrupted)
        #expect(sa.map(\.step) == [6, 12, 16] && sa.map(\.score) == sb.map(\.score))
        let ends = try [straight, interrupted].map { try checkpoint(h, $0) }
        for (name, w) in ends[0].weights { #expect(w.scalars == ends[1].weights[name]?.scalars, "weight \(name)") }
        for (name, m) in ends[0].moments { #expect(m.scalars == ends[1].moments[name]?.scalars, "moment \(name)") }
    }

    /// A fine-tune with init starts from the pretraining checkpoint's encoder: at a learning rate
    /// of 1e-30 its first checkpoint holds the source's encoder weights (see WarmStartTests for
    /// the bound), and the head it added.
    @Test func initStartsFromThePretrainedEncoder() async throws {
        let h = try Harness(realData: true)
        try h.pool.start()
        defer { h.pool.shutdown() }
        let source = try h.submit("simmim", steps: 4, overrides: ["checkpoint_every": .number(4)])
        try await h.wait(source, for: [.succeeded])
        let still: [String: JSONValue] = ["base_lr": .number(1e-30), "min_lr": .number(0), "warmup_steps": .number(0)]
        let tuned = try h.submit("simmim", steps: 1, overrides: still, initFrom: CheckpointReference(job: source), task: "finetune")
        let job = try await h.wait(tuned, for: [.succeeded, .failed])
        #expect(job.state == .succeeded, "\(job.error ?? "")")
        let want = try checkpoint(h, source).weights, got = try checkpoint(h, tuned).weights
        var worst: Float = 0, compared = 0
        for (name, w) in got where !name.hasPrefix("head.") {
            let src = try #require(want[name], "\(name) is not in the source")
            for i in 0..<w.count { worst = max(worst, abs(w.pointer[i] - src.pointer[i])) }
            compared += 1
        }
        #expect(compared > 10 && worst <= 1e-29, "a weight moved by \(worst)")
    }

    /// Fine-tuning learns: on 3 800 synthetic images of ten shape classes, from scratch, top-1 on
    /// 200 held-out images ends well above chance. Chance is 1/10 (binomial σ ≈ 0.021 on 200);
    /// the bar is chance plus 6 σ, which a classifier that learned nothing passes with
    /// probability below 1e-8.
    @Test func fineTuningLearnsTheClasses() async throws {
        let h = try Harness(realData: true, syntheticCount: 4000)
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit("mae", steps: 400, batch: 16, overrides: [
            "val_fraction": .number(0.05), "eval_images": .number(200), "eval_every": .number(50),
            "drop_path": .number(0), "crop_scale_min": .number(0.35), "warmup_steps": .number(20),
        ], task: "finetune")
        let job = try await h.wait(id, for: [.succeeded, .failed], timeout: 600)
        #expect(job.state == .succeeded, "\(job.error ?? "")")
        let top1 = try #require(try scores(h, id).last).score.top1
        #expect(top1 >= 0.1 + 6 * (0.1 * 0.9 / 200).squareRoot(), "top-1 \(top1)")
    }
}
