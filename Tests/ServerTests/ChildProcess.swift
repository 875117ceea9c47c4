import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A real `mimserve` process started by a test (`serve` or `worker`): its first line on stdout
/// says where it listens.
final class MIMServeProcess: @unchecked Sendable {
    /// `mimserve` beside the test bundle (swift test builds it into the same folder).
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("mimserve")
    }

    let process = Process()
    let base: URL
    var pid: Int32 { process.processIdentifier }

    init(_ arguments: [String], workingDirectory: URL? = nil) throws {
        process.executableURL = Self.executable
        process.arguments = arguments
        if let workingDirectory { process.currentDirectoryURL = workingDirectory }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while let byte = try out.fileHandleForReading.read(upToCount: 1), !byte.isEmpty, byte != Data("\n".utf8) { line += byte }
        let text = String(decoding: line, as: UTF8.self)
        guard let url = text.split(separator: " ").last.flatMap({ URL(string: String($0)) }), url.port != nil else {
            throw Failure("unexpected first line: \(text)")
        }
        base = url
    }

    /// `mimserve serve` on a free port.
    static func serve(dataDir: URL, workingDirectory: URL? = nil, extraArguments: [String] = []) throws -> MIMServeProcess {
        try MIMServeProcess(["serve", "--port", "0", "--data-dir", dataDir.path, "--log-level", "error"] + extraArguments,
                            workingDirectory: workingDirectory)
    }

    /// `mimserve worker` with one slot, its probes on a free port.
    static func worker(dataDir: URL, database: String, leaseSeconds: Double) throws -> MIMServeProcess {
        try MIMServeProcess(["worker", "--port", "0", "--data-dir", dataDir.path, "--database", database,
                             "--lease-seconds", "\(leaseSeconds)", "--log-level", "error"])
    }

    func get(_ path: String) async throws -> [String: Any] {
        let (data, _) = try await URLSession.shared.data(from: URL(string: path, relativeTo: base)!)
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    func post(_ path: String, _ json: [String: Any]) async throws -> [String: Any] {
        var r = URLRequest(url: URL(string: path, relativeTo: base)!)
        r.httpMethod = "POST"
        r.httpBody = try JSONSerialization.data(withJSONObject: json)
        r.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let (data, _) = try await URLSession.shared.data(for: r)
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    func status(_ path: String) async throws -> Int {
        let (_, response) = try await URLSession.shared.data(from: URL(string: path, relativeTo: base)!)
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }

    /// A gauge or counter of its `/metrics`; -1 when absent.
    func gauge(_ name: String) async throws -> Int {
        let (data, _) = try await URLSession.shared.data(from: URL(string: "/metrics", relativeTo: base)!)
        let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? -1
    }

    /// Training steps its slots completed since it started.
    func stepsDone() async throws -> Int { try await gauge("mimserve_training_steps_completed") }

    /// Jobs its slots are training now.
    func jobsTraining() async throws -> Int { try await gauge("mimserve_trainer_jobs_training") }

    func signal(_ s: Int32) { kill(process.processIdentifier, s) }

    /// Ends it (thawing it first, should it be stopped) and waits for it.
    func stop() {
        guard process.isRunning else { return }
        signal(SIGCONT)
        process.terminate()
        process.waitUntilExit()
    }
}
