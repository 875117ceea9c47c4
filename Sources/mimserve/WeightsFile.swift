#if canImport(FoundationEssentials)
import Config
import FoundationEssentials
#else
import Foundation
#endif
import Models
import NN

/// MIMServe's weights file: safetensors under our parameter names (buffers included), with
/// metadata `format` = "mimserve-weights", `method` and `model_config` (the ModelConfig JSON),
/// so the model can be rebuilt from the file alone.
enum WeightsFile {
    static let format = "mimserve-weights"

    static func write(_ model: some MIMModel, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let config = String(decoding: try encoder.encode(model.config), as: UTF8.self)
        let metadata = ["format": format, "method": model.config.method.rawValue, "model_config": config]
        try SafeTensors.write(model.stateDict(), metadata: metadata, to: path)
    }

    /// Rebuilds the MAE the file describes and loads its weights strictly.
    static func readMAE(path: String) throws -> MAE {
        let (tensors, metadata) = try SafeTensors.read(path: path)
        guard metadata["format"] == format else { throw WeightsFileError.notWeightsFile(path, format: metadata["format"]) }
        guard let json = metadata["model_config"] else { throw WeightsFileError.missingMetadata(path, key: "model_config") }
        let config: ModelConfig
        do { config = try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8)) } catch {
            throw WeightsFileError.invalidModelConfig(path, reason: "\(error)")
        }
        guard config.method == .mae, metadata["method"] == config.method.rawValue else {
            throw WeightsFileError.notMAE(path, method: metadata["method"] ?? config.method.rawValue)
        }
        try config.validate()
        let model = MAE(config: config, seed: 0)
        try model.loadState(tensors, strict: true)
        return model
    }
}

/// Why a file is not a usable MIMServe weights file.
enum WeightsFileError: Error, CustomStringConvertible {
    /// The safetensors metadata lacks `format` = "mimserve-weights".
    case notWeightsFile(String, format: String?)
    /// A required metadata key is absent.
    case missingMetadata(String, key: String)
    /// `model_config` is not ModelConfig JSON.
    case invalidModelConfig(String, reason: String)
    /// The weights belong to another method (or `method` disagrees with `model_config`).
    case notMAE(String, method: String)

    var description: String {
        switch self {
        case let .notWeightsFile(p, f): "\(p) is not a MIMServe weights file (metadata format \(f.map { "\"\($0)\"" } ?? "absent"))"
        case let .missingMetadata(p, k): "\(p) has no \"\(k)\" in its metadata"
        case let .invalidModelConfig(p, reason): "\(p): model_config is not a valid ModelConfig: \(reason)"
        case let .notMAE(p, m): "\(p) holds a \(m) model; only MAE exports to Hugging Face"
        }
    }
}
