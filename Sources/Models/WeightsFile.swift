#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Config
import NN
import TensorCore

/// MIMServe's one weights format, which training checkpoints, `mimserve import-hf` and
/// `mimserve export-hf` all read and write: safetensors with the model's tensors (buffers
/// included) as `model.<name>`, and metadata `format` = "mimserve-checkpoint-1", `method`, and
/// `config`, a JSON object whose `model` is the `ModelConfig`, so the model can be rebuilt from
/// the file alone. A training checkpoint (Trainer's `Checkpoint`) is such a file whose `config`
/// is the whole job configuration, with the optimizer moments as `optim.*` tensors and the step,
/// optimizer step count, RNG state and wall time as more metadata. A file written from a model
/// alone (`import-hf`) has `{"model": …}` as its `config` and nothing more.
public struct WeightsFile {
    public static let format = "mimserve-checkpoint-1"

    public var model: ModelConfig
    /// A fine-tuning checkpoint's settings: its tensors are an encoder and a head (`Classifier`).
    public var finetune: FinetuneConfig?
    /// The model's tensors by their names in the model (without `model.`).
    public var weights: [String: Tensor]
    /// Every other tensor under its full name (a checkpoint's `optim.*`).
    public var extraTensors: [String: Tensor]
    /// Every metadata entry, `format`, `method` and `config` included.
    public var metadata: [String: String]

    /// - config: a JSON object with at least `model` (the `ModelConfig`).
    /// - extraTensors, extraMetadata: what a checkpoint adds; names must not start with `model.`.
    public static func encode(weights: [String: Tensor], method: Method, config: String,
                              extraTensors: [String: Tensor] = [:], extraMetadata: [String: String] = [:]) -> [UInt8] {
        var tensors = extraTensors
        for (name, t) in weights { tensors["model." + name] = t }
        precondition(tensors.count == weights.count + extraTensors.count, "extra tensors may not be named model.*")
        let metadata = extraMetadata.merging(["format": format, "method": method.rawValue, "config": config]) { _, own in own }
        return SafeTensors.encode(tensors, metadata: metadata)
    }

    /// The file of `model` alone.
    public static func encode(_ model: some MIMModel) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let config = String(decoding: try! encoder.encode(ModelSection(model: model.config)), as: UTF8.self)
        return encode(weights: model.stateDict(), method: model.config.method, config: config)
    }

    public static func write(_ model: some MIMModel, to path: String) throws(WeightsFileError) {
        do { try AtomicFile.write(encode(model), to: path) } catch { throw .io(error) }
    }

    public static func decode(_ bytes: [UInt8]) throws(WeightsFileError) -> WeightsFile {
        let file: (tensors: [String: Tensor], metadata: [String: String])
        do { file = try SafeTensors.decode(bytes) } catch { throw .safeTensors(error) }
        return try parse(file.tensors, file.metadata)
    }

    public static func read(path: String) throws(WeightsFileError) -> WeightsFile {
        let file: (tensors: [String: Tensor], metadata: [String: String])
        do { file = try SafeTensors.read(path: path) } catch { throw .safeTensors(error) }
        return try parse(file.tensors, file.metadata)
    }

    /// The model a file describes, and whether it is a fine-tuned classifier, from its header alone.
    public static func readDescription(path: String) throws(WeightsFileError) -> (model: ModelConfig, finetune: FinetuneConfig?) {
        let metadata: [String: String]
        do { metadata = try SafeTensors.readMetadata(path: path) } catch { throw .safeTensors(error) }
        let parsed = try parse([:], metadata)
        return (parsed.model, parsed.finetune)
    }

    private static func parse(_ tensors: [String: Tensor], _ metadata: [String: String]) throws(WeightsFileError) -> WeightsFile {
        guard metadata["format"] == format else { throw .notWeightsFile(format: metadata["format"]) }
        guard let json = metadata["config"] else { throw .invalidConfig("the metadata has no \"config\"") }
        let section: ModelSection
        do { section = try JSONDecoder().decode(ModelSection.self, from: Data(json.utf8)) } catch {
            throw .invalidConfig("\"config\" holds no valid \"model\": \(error)")
        }
        var weights: [String: Tensor] = [:], extra: [String: Tensor] = [:]
        for (name, t) in tensors {
            if name.hasPrefix("model.") { weights[String(name.dropFirst(6))] = t } else { extra[name] = t }
        }
        return WeightsFile(model: section.model, finetune: section.finetune, weights: weights, extraTensors: extra, metadata: metadata)
    }

    /// The model the file describes (validated), with every parameter loaded strictly.
    public func makeModel() throws(WeightsFileError) -> any MIMModel {
        guard finetune == nil else { throw .classifier }
        let built: any MIMModel
        do { built = try ModelRegistry.make(model, seed: 0) } catch { throw .invalidConfig("\(error)") }
        do { try built.loadState(weights, strict: true) } catch { throw .weightsMismatch(error) }
        return built
    }

    /// The fine-tuned classifier a fine-tuning checkpoint holds, every tensor loaded strictly.
    public func makeClassifier() throws(WeightsFileError) -> Classifier {
        guard let finetune else { throw .invalidConfig("not a fine-tuning checkpoint") }
        let built: any MIMModel
        do { built = try ModelRegistry.make(model, seed: 0, decoderBlocks: false) } catch { throw .invalidConfig("\(error)") }
        let classifier = Classifier(backbone: built, classes: finetune.classes, pool: finetune.pool, seed: 0)
        do { try classifier.loadState(weights) } catch { throw .weightsMismatch(error) }
        return classifier
    }

    /// The files of `format` for whatever the file holds: a pretraining model or a fine-tuned classifier.
    public func exportFiles(_ format: ExportFormat) throws -> [ExportedFile] {
        if finetune != nil { return try ModelExport.files(try makeClassifier(), format: format) }
        return try ModelExport.files(try makeModel(), format: format)
    }

    /// The part of `config` every file has.
    struct ModelSection: Codable {
        let model: ModelConfig
        var finetune: FinetuneConfig?
    }
}

/// Why a file is not a usable MIMServe weights file or checkpoint.
public enum WeightsFileError: Error, CustomStringConvertible {
    /// The file cannot be read, or is not a valid safetensors file.
    case safeTensors(SafeTensorsError)
    /// The metadata lacks `format` = "mimserve-checkpoint-1".
    case notWeightsFile(format: String?)
    /// `config` is absent, holds no valid `model`, or describes an invalid model.
    case invalidConfig(String)
    /// The weights do not fit the model `config` describes (a tensor missing, extra or misshapen).
    case weightsMismatch(StateError)
    /// Writing the file failed.
    case io(AtomicFileError)
    /// A fine-tuning checkpoint: an encoder and a classifier head, not a pretraining model.
    case classifier

    public var description: String {
        switch self {
        case .safeTensors(let e): "\(e)"
        case .notWeightsFile(let f):
            "not a MIMServe weights file or checkpoint (metadata format \(f.map { "\"\($0)\"" } ?? "absent"), expected \"\(WeightsFile.format)\")"
        case .invalidConfig(let reason): "invalid model configuration: \(reason)"
        case .weightsMismatch(let e): "the weights do not fit the model: \(e)"
        case .io(let e): "\(e)"
        case .classifier: "a fine-tuning checkpoint holds an encoder and a classifier head, not a pretraining model"
        }
    }
}
