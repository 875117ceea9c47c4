import ArgumentParser
import Foundation
import Server

/// `mimserve worker`: trainer slots on a shared PostgreSQL queue, with probes on their own port.
struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train jobs from a PostgreSQL queue shared with API nodes; serves only /healthz, /readyz and /metrics.")

    @Option(help: "Address of the probes (MIMSERVE_HOST; default 127.0.0.1).") var host: String?
    @Option(help: "Port of the probes; 0 picks a free one (MIMSERVE_PORT; default 9090).") var port: Int?
    @Option(help: "Folder shared with the API nodes: checkpoints and datasets (MIMSERVE_DATA_DIR; default ./data).") var dataDir: String?
    @Option(help: ArgumentHelp("postgres://user:password@host:port/database[?host=/socket/dir&schema=NAME], the API nodes' database (MIMSERVE_DATABASE; required).", valueName: "location")) var database: String?
    @Option(help: "Jobs trained at once (MIMSERVE_TRAINER_SLOTS; default 1).") var trainerSlots: Int?
    @Option(help: "Seconds a claimed job is held without a heartbeat; renewed every third of it (MIMSERVE_LEASE_SECONDS; default 30).") var leaseSeconds: Double?
    @Option(help: "Nice value 0…19 of the trainer slots' threads (MIMSERVE_TRAINER_NICE; default 0).") var trainerNice: Int?
    @Option(help: "trace, debug, info, notice, warning or error (MIMSERVE_LOG_LEVEL; default info).") var logLevel: String?
    @Option(help: "SQL migrations folder, holding sqlite/ and postgres/ (MIMSERVE_MIGRATIONS; default: Migrations/ found near the executable).") var migrationsDir: String?
    @Option(help: "Fashion-MNIST IDX folder (MIMSERVE_FASHION_MNIST_DIR; default Debian's).") var fashionMnistDir: String?

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        func pick<T>(_ flag: T?, _ key: String, _ parse: (String) -> T?) throws -> T? {
            if let flag { return flag }
            guard let raw = env["MIMSERVE_" + key], !raw.isEmpty else { return nil }
            guard let v = parse(raw) else { throw ValidationError("MIMSERVE_\(key): cannot read '\(raw)'") }
            return v
        }
        var c = ServerConfiguration()
        c.host = try pick(host, "HOST", { $0 }) ?? c.host
        c.port = try pick(port, "PORT", Int.init) ?? 9090
        c.dataDir = try pick(dataDir, "DATA_DIR", { $0 }) ?? c.dataDir
        guard let location = try pick(database, "DATABASE", { $0 }) else {
            throw ValidationError("--database (or MIMSERVE_DATABASE) is required: the PostgreSQL database the API nodes use")
        }
        c.database = location
        c.trainerSlots = try pick(trainerSlots, "TRAINER_SLOTS", Int.init) ?? c.trainerSlots
        c.leaseSeconds = try pick(leaseSeconds, "LEASE_SECONDS", Double.init) ?? c.leaseSeconds
        c.trainerNice = try pick(trainerNice, "TRAINER_NICE", Int.init) ?? c.trainerNice
        c.logLevel = try pick(logLevel, "LOG_LEVEL", { $0 }) ?? c.logLevel
        c.migrationsDir = try pick(migrationsDir, "MIGRATIONS", { $0 })
        c.fashionMNISTDir = try pick(fashionMnistDir, "FASHION_MNIST_DIR", { $0 })
        do {
            let app = try buildWorker(configuration: c) { host, port in
                FileHandle.standardOutput.write(Data("MIMServe worker probes on http://\(host):\(port)\n".utf8))
            }
            try await app.runService()
        } catch let error as StartupError {
            throw ValidationError(error.description)
        }
    }
}
