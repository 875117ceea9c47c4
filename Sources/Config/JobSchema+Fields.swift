/// The table of job settings (`JobField`), in the order the form shows them.
public enum JobSchema {
    static let windowed: [Method] = [.simmim, .ummae, .greenmim, .mixmae]
    static let decoded: [Method] = [.mae, .ummae, .greenmim, .mixmae, .convmae]

    static func field(_ name: String, _ group: JobField.Group, _ kind: JobField.Kind, nullable: Bool = false,
                      methods: [Method]? = nil, fixedDefault: JSONValue? = nil, _ help: String) -> JobField {
        JobField(name: name, group: group, kind: kind, nullable: nullable, help: help, methods: methods, fixedDefault: fixedDefault)
    }

    static func open(_ lower: Double, _ upper: Double) -> JobField.Kind { .number(Interval(lower: lower, upper: upper, lowerOpen: true, upperOpen: true)) }
    static func closedOpen(_ lower: Double, _ upper: Double) -> JobField.Kind { .number(Interval(lower: lower, upper: upper, lowerOpen: false, upperOpen: true)) }
    static func openClosed(_ lower: Double, _ upper: Double) -> JobField.Kind { .number(Interval(lower: lower, upper: upper, lowerOpen: true, upperOpen: false)) }

    /// Steps a job may train (and so the largest step any step-valued setting may name).
    public static let maxSteps = 10_000_000

    /// Every field of a request, top level first, then the model's, then training's.
    public static let fields: [JobField] = [
        field("task", .request, .choice(JobTask.allCases.map(\.rawValue)), fixedDefault: .string(JobTask.pretrain.rawValue),
              "pretrain: the method's self-supervised objective; finetune: a classifier on the encoder, trained on a labelled dataset"),
        field("total_steps", .request, .integer(1...maxSteps), fixedDefault: .number(Double(TrainingConfig.defaultTotalSteps)),
              "Training steps"),
        field("batch_size", .request, .integer(1...4096), "Images per step"),
        field("seed", .request, .integer(0...9_007_199_254_740_991), fixedDefault: .number(0),
              "Seed for initialisation, data order, augmentation and masks"),
        field("init", .request, .checkpoint, nullable: true,
              "Start from the weights of a pretraining job's checkpoint of the same method and architecture ({job, step}: its newest unless step is given) "
              + "or from imported weights ({weights: id}, GET /v1/weights), with this job's own schedule, optimizer state and dataset; "
              + "without a preset, the job takes the source's model; null: from the seed's initialisation"),

        field("image_size", .model, .integer(8...1024), "Input side in pixels"),
        field("patch_size", .model, .integer(1...1024), "Patch side in pixels"),
        field("embed_dim", .model, .integer(1...4096), "Encoder width (the first stage's for pyramid encoders)"),
        field("depths", .model, .integers(each: 1...64, count: 1...ModelConfig.maxStages), "Blocks per stage (a ViT has one stage)"),
        field("heads", .model, .integers(each: 1...256, count: 1...ModelConfig.maxStages), "Attention heads per stage"),
        field("stage_widths", .model, .integers(each: 1...4096, count: 1...ModelConfig.maxStages), nullable: true,
              methods: [.convmae], "Width of each stage (null: double per stage)"),
        field("window_size", .model, .integer(0...1024), methods: windowed, "Window side in tokens"),
        field("mlp_ratio", .model, .integer(1...16), "MLP hidden width ÷ width"),
        field("layer_norm_eps", .model, open(0, 0.1), "LayerNorm epsilon"),
        field("mask_ratio", .model, open(0, 1), "Share of mask units hidden from the encoder"),
        field("mask_unit", .model, .integer(1...1024), "Masking granularity in pixels (a multiple of the patch)"),
        field("secondary_mask_ratio", .model, closedOpen(0, 1), methods: [.ummae], fixedDefault: .number(0.25),
              "Share of the kept units shown to the encoder as the mask token instead"),
        field("pos_mlp_dim", .model, .integer(1...1024), methods: [.ummae], fixedDefault: .number(32),
              "Hidden width of the relative-position MLP"),
        field("grouping", .model, .choice(GroupingMode.allCases.map(\.rawValue)), methods: [.greenmim],
              fixedDefault: .string(GroupingMode.search.rawValue),
              "search: the group size of least cost; fixed: the window's token count, as the reference code"),
        field("group_size_max", .model, .integer(1...1_048_576), nullable: true, methods: [.greenmim],
              "Largest group of visible tokens per attention call (null: the window's token count)"),
        field("decoder_dim", .model, .integer(0...4096), methods: decoded, "Decoder width"),
        field("decoder_depth", .model, .integer(0...64), methods: decoded, "Decoder blocks"),
        field("decoder_heads", .model, .integer(0...256), methods: decoded, "Decoder attention heads"),
        field("decoder_positions", .model, .choice(DecoderPositions.allCases.map(\.rawValue)), methods: [.ummae, .greenmim],
              fixedDefault: .string(DecoderPositions.true.rawValue),
              "true: each latent at its unit's position; reference: the reference code's ordering, to reproduce its numbers"),
        field("norm_pix_loss", .model, .boolean, "Normalise each target patch by its own mean and variance"),

        field("base_lr", .training, open(0, 10), "Peak learning rate after warm-up; the recipe's scales with the batch"),
        field("min_lr", .training, closedOpen(0, 10), "Final learning rate of the cosine schedule (at most base_lr)"),
        field("warmup_steps", .training, .integer(0...maxSteps), "Linear warm-up steps; the recipe's are a share of total_steps"),
        field("weight_decay", .training, closedOpen(0, 10), "AdamW decoupled weight decay"),
        field("beta1", .training, closedOpen(0, 1), "AdamW β1"),
        field("beta2", .training, closedOpen(0, 1), "AdamW β2"),
        field("clip_grad", .training, openClosed(0, 1e6), nullable: true, "Global gradient-norm clip (null: none)"),
        field("crop_scale_min", .training, openClosed(0, 1), "RandomResizedCrop's smallest area share"),
        field("hflip", .training, .boolean, fixedDefault: .bool(true), "Random horizontal flips"),
        field("checkpoint_every", .training, .integer(1...maxSteps),
              "Steps between checkpoints; a quarter of total_steps unless set, at most \(TrainingConfig.defaultCheckpointEveryMax)"),
        field("keep_checkpoints", .training, .integer(1...100), fixedDefault: .number(Double(TrainingConfig.defaultKeepCheckpoints)),
              "Periodic checkpoints kept (the final one is kept too)"),
        field("precision", .training, .choice(Precision.allCases.map(\.rawValue)), fixedDefault: .string(Precision.fp32.rawValue),
              "GEMM inputs: fp32, or bf16 with fp32 sums (CPUs with AVX512_BF16 or AMX; GET /v1/system says)"),
        field("recompute", .training, .boolean, fixedDefault: .bool(false),
              "Recompute each block in the backward pass instead of keeping its activations: less memory, about a third more compute"),
        field("data_workers", .training, .integer(1...16), fixedDefault: .number(Double(TrainingConfig.defaultDataWorkers)),
              "Threads decoding and augmenting images"),

        field("pool", .finetune, .choice([Pooling.mean.rawValue, Pooling.cls.rawValue]), fixedDefault: .string(Pooling.mean.rawValue),
              "The head's input: the mean of the encoder's tokens, or the class token (MAE only)"),
        field("layer_decay", .finetune, openClosed(0, 1),
              "Layer-wise learning-rate decay: each layer below the head learns this factor slower (1: none)"),
        field("label_smoothing", .finetune, closedOpen(0, 1), fixedDefault: .number(0.1), "Share of each target spread over all classes"),
        field("drop_path", .finetune, closedOpen(0, 1), fixedDefault: .number(0.1),
              "Stochastic depth of the last block, rising linearly from 0 at the first"),
        field("mixup", .finetune, .number(Interval(lower: 0, upper: 10, lowerOpen: false, upperOpen: false)), fixedDefault: .number(0),
              "Mixup's Beta(α, α) parameter; 0: off (the papers use 0.8)"),
        field("cutmix", .finetune, .number(Interval(lower: 0, upper: 10, lowerOpen: false, upperOpen: false)), fixedDefault: .number(0),
              "CutMix's Beta(α, α) parameter; 0: off (the papers use 1.0). With mixup on too, each batch uses one of them"),
        field("eval_every", .finetune, .integer(1...maxSteps), "Steps between top-1 scores on the held-out split; the checkpoint interval unless set"),
        field("eval_images", .finetune, .integer(10...50_000), fixedDefault: .number(Double(FinetuneConfig.defaultEvalImages)),
              "Held-out images each score uses"),
        field("val_fraction", .finetune, openClosed(0, 0.5), fixedDefault: .number(Double(FinetuneConfig.defaultValFraction)),
              "Share of the dataset held out (never trained on) when it has no held-out split of its own"),
    ]

    static let byName: [String: JobField] = Dictionary(uniqueKeysWithValues: fields.map { ($0.name, $0) })

    public static func field(named name: String) -> JobField? { byName[name] }

    /// The fields `overrides` may set.
    public static var overridable: [JobField] { fields.filter { $0.group != .request } }

    /// Every field of `group` present in `values` that the table refuses, by field name. A field
    /// the table does not know is left to the caller (it may be an internal one, like `method`).
    static func problems(in values: [String: JSONValue], group: JobField.Group, prefix: String = "") -> [FieldError] {
        fields.filter { $0.group == group }.compactMap { f in
            guard let v = values[f.name], let reason = f.problem(with: v) else { return nil }
            return FieldError(prefix + f.name, reason)
        }
    }
}
