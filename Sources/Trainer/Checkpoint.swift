import Config
import Crypto
import Foundation
import Models
import NN
import Optim
import TensorCore

/// A training checkpoint: safetensors with `model.<name>` weights, `optim.exp_avg.<name>` and
/// `optim.exp_avg_sq.<name>` moments, and metadata (format, step, optimizer step count, RNG
/// state, wall time, the resolved job config), so a resumed job continues the same curve.
public struct Checkpoint {
    public static let format = "mimserve-checkpoint-1"

    public var config: JobConfig
    public var step: Int
    public var optimizerSteps: Int
    public var rng: RandomGenerator
    public var wallTimeS: Double
    public var weights: [String: Tensor]
    public var moments: [String: Tensor]

    public func encode() -> [UInt8] {
        var tensors: [String: Tensor] = [:]
        for (k, v) in weights { tensors["model." + k] = v }
        for (k, v) in moments { tensors["optim." + k] = v }
        let metadata = [
            "format": Self.format, "step": String(step), "optimizer_steps": String(optimizerSteps),
            "rng": rng.state.map(String.init).joined(separator: ","), "wall_time_s": String(wallTimeS),
            "method": config.method.rawValue, "preset": config.preset, "config": config.json(),
        ]
        return SafeTensors.encode(tensors, metadata: metadata)
    }

    public static func decode(_ bytes: [UInt8]) throws -> Checkpoint {
        let (tensors, meta) = try SafeTensors.decode(bytes)
        guard meta["format"] == format else {
            throw CheckpointError.invalid("not a MIMServe checkpoint (format \(meta["format"] ?? "missing"))")
        }
        guard let step = meta["step"].flatMap(Int.init), let optSteps = meta["optimizer_steps"].flatMap(Int.init),
              let words = meta["rng"]?.split(separator: ",").compactMap({ UInt64($0) }), words.count == 4,
              let wall = meta["wall_time_s"].flatMap(Double.init), let configJSON = meta["config"] else {
            throw CheckpointError.invalid("metadata lacks step, optimizer_steps, rng, wall_time_s or config")
        }
        let config = try JobConfig.decode(configJSON)
        var weights: [String: Tensor] = [:], moments: [String: Tensor] = [:]
        for (k, v) in tensors {
            if k.hasPrefix("model.") { weights[String(k.dropFirst(6))] = v }
            else if k.hasPrefix("optim.") { moments[String(k.dropFirst(6))] = v }
            else { throw CheckpointError.invalid("unexpected tensor '\(k)'") }
        }
        return Checkpoint(config: config, step: step, optimizerSteps: optSteps, rng: RandomGenerator(state: words),
                          wallTimeS: wall, weights: weights, moments: moments)
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

/// Durable file writes: a temp file in the same folder, fsync, rename over the target, fsync
/// the folder. A crash at any point leaves either the old file or the new one, never half.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to url: URL) throws(CheckpointError) {
        let dir = url.deletingLastPathComponent()
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw .io("cannot create \(dir.path): \(error.localizedDescription)")
        }
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw .io("cannot create \(tmp.path): errno \(errno)") }
        var offset = 0
        let ok = bytes.withUnsafeBytes { raw -> Bool in
            while offset < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { return false }
                offset += n
            }
            return fsync(fd) == 0
        }
        close(fd)
        guard ok, rename(tmp.path, url.path) == 0 else {
            unlink(tmp.path)
            throw .io("cannot write \(url.path): errno \(errno)")
        }
        let dfd = open(dir.path, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public static func sha256Hex(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
