import Config
import Crypto
import Foundation
import Models
import NN
import Optim
import TensorCore

/// A training checkpoint: a `WeightsFile` (so `mimserve export-hf` and inference read it like any
/// weights file) whose `config` is the resolved job configuration, with the AdamW moments as
/// `optim.exp_avg.<name>` and `optim.exp_avg_sq.<name>` and metadata `step`, `optimizer_steps`,
/// `rng`, `wall_time_s` and `preset`, so a resumed job continues the same curve.
public struct Checkpoint {
    public var config: JobConfig
    public var step: Int
    public var optimizerSteps: Int
    public var rng: RandomGenerator
    public var wallTimeS: Double
    public var weights: [String: Tensor]
    public var moments: [String: Tensor]

    public func encode() -> [UInt8] {
        var optim: [String: Tensor] = [:]
        for (k, v) in moments { optim["optim." + k] = v }
        let metadata = [
            "step": String(step), "optimizer_steps": String(optimizerSteps),
            "rng": rng.state.map(String.init).joined(separator: ","), "wall_time_s": String(wallTimeS),
            "preset": config.preset,
        ]
        return WeightsFile.encode(weights: weights, method: config.method, config: config.json(),
                                  extraTensors: optim, extraMetadata: metadata)
    }

    public static func decode(_ bytes: [UInt8]) throws -> Checkpoint {
        let file = try WeightsFile.decode(bytes)
        let meta = file.metadata
        guard let step = meta["step"].flatMap(Int.init), let optSteps = meta["optimizer_steps"].flatMap(Int.init),
              let words = meta["rng"]?.split(separator: ",").compactMap({ UInt64($0) }), words.count == 4,
              let wall = meta["wall_time_s"].flatMap(Double.init), let configJSON = meta["config"] else {
            throw CheckpointError.invalid("a weights file without training state: metadata lacks step, optimizer_steps, rng or wall_time_s")
        }
        let config = try JobConfig.decode(configJSON)
        var moments: [String: Tensor] = [:]
        for (k, v) in file.extraTensors {
            guard k.hasPrefix("optim.") else { throw CheckpointError.invalid("unexpected tensor '\(k)'") }
            moments[String(k.dropFirst(6))] = v
        }
        return Checkpoint(config: config, step: step, optimizerSteps: optSteps, rng: RandomGenerator(state: words),
                          wallTimeS: wall, weights: file.weights, moments: moments)
    }
}

public enum CheckpointError: Error, CustomStringConvertible {
    case invalid(String)
    case io(String)
    case digestMismatch(path: String)

    public var description: String {
        switch self {
        case .invalid(let m): "invalid checkpoint: \(m)"
        case .io(let m): "checkpoint I/O: \(m)"
        case .digestMismatch(let p): "checkpoint \(p) does not match its recorded sha256"
        }
    }
}

/// SHA-256 as lowercase hex: a checkpoint's recorded digest, an idempotent request's hash.
public enum Checksum {
    public static func sha256Hex(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
