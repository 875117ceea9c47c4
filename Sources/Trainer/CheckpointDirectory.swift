import Config
import Foundation
import NN

/// Where checkpoints live: `<job id>/step-<8 digits>.safetensors` under the checkpoint directory
/// (`--checkpoint-dir`, by default `<data-dir>/checkpoints`; in a cluster a folder every node
/// mounts). The store records each file by that path relative to the directory; this type alone
/// builds, resolves and removes them.
public struct CheckpointDirectory: Sendable {
    public let root: URL

    public init(root: URL) { self.root = root }

    /// The file a recorded checkpoint path names.
    public func url(_ relativePath: String) -> URL { root.appendingPathComponent(relativePath) }

    func jobFolder(_ id: String) -> URL { root.appendingPathComponent(id, isDirectory: true) }

    /// Writes the checkpoint of `job` at `step` durably and returns its recorded path.
    func write(_ bytes: [UInt8], job: String, step: Int) throws(CheckpointError) -> String {
        let relative = "\(job)/step-\(String(format: "%08d", step)).safetensors"
        let folder = jobFolder(job)
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw .io("cannot create \(folder.path): \(error.localizedDescription)")
        }
        do { try AtomicFile.write(bytes, to: url(relative).path) } catch { throw .io("\(error)") }
        return relative
    }

    /// The bytes of a recorded checkpoint; nil when its file is gone.
    func read(_ relativePath: String) -> [UInt8]? {
        FileManager.default.contents(atPath: url(relativePath).path).map { [UInt8]($0) }
    }

    /// Removes one recorded checkpoint's file; one already gone is fine.
    func remove(_ relativePath: String) {
        try? FileManager.default.removeItem(at: url(relativePath))
    }

    /// Imported weights (`init: {"weights": id}`) live in `weights/<id>.safetensors`, where
    /// `mimserve import-hf -o` puts them; every node sees them like the checkpoints.
    public var weightsFolder: URL { root.appendingPathComponent("weights", isDirectory: true) }

    /// The file of imported weights `id`, if there is one (nil for an id that is not a plain name).
    public func importedWeights(_ id: String) -> URL? {
        guard JobField.isWeightsID(id) else { return nil }
        let url = weightsFolder.appendingPathComponent("\(id).safetensors")
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }

    /// The ids of every imported weights file, sorted.
    public func importedWeightIDs() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: weightsFolder.path)) ?? []
        return names.filter { $0.hasSuffix(".safetensors") }.map { String($0.dropLast(12)) }.filter(JobField.isWeightsID).sorted()
    }

    /// Removes every file of a deleted job: its recorded checkpoints and its folder, with any
    /// file a crash left there unrecorded.
    public func removeJob(_ id: String, recorded paths: [String]) {
        for p in paths { remove(p) }
        try? FileManager.default.removeItem(at: jobFolder(id))
    }
}
