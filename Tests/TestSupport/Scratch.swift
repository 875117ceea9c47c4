import Foundation

/// Scratch directories for tests, all under one directory per test process that is removed
/// when the process exits, so repeated runs do not fill the disk with data directories,
/// checkpoints and databases (a run that is killed still leaves its own behind).
public enum Scratch {
    public static let root: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("mimserve-tests-\(getpid())")
        try? FileManager.default.removeItem(at: url)  // an earlier process's, with the same pid
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: Scratch.root) }
        return url
    }()

    /// A new path under `root`, not yet created; `prefix` says what it is for.
    public static func url(_ prefix: String) -> URL { root.appendingPathComponent("\(prefix)-\(UUID().uuidString)") }
}
