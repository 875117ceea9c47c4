import ArgumentParser
import Foundation
import Server

/// Flags win over `MIMSERVE_*` environment variables, which win over the defaults documented
/// on `ServerConfiguration`.
struct EnvironmentSettings {
    let values = ProcessInfo.processInfo.environment

    /// The flag's value, else `MIMSERVE_<key>` parsed, else nil; an unreadable variable is an error naming it.
    func pick<T>(_ flag: T?, _ key: String, _ parse: (String) -> T?) throws -> T? {
        if let flag { return flag }
        guard let raw = values["MIMSERVE_" + key], !raw.isEmpty else { return nil }
        guard let v = parse(raw) else { throw ValidationError("MIMSERVE_\(key): cannot read '\(raw)'") }
        return v
    }
}

/// What every node takes, API node (`serve`) or worker: where it listens, where its files and
/// database are, and how it trains.
struct NodeOptions: ParsableArguments {
    @Option(help: "Address to bind (MIMSERVE_HOST; default 127.0.0.1). A non-loopback API address needs --token.") var host: String?
    @Option(help: "TCP port of the API, or of a worker's probes; 0 picks a free one (MIMSERVE_PORT; default 8080, worker 9090).") var port: Int?
    @Option(help: "Folder of datasets and, unless moved, checkpoints and the SQLite file (MIMSERVE_DATA_DIR; default ./data).") var dataDir: String?
    @Option(help: "Folder of checkpoint files; in a cluster, one every node mounts (MIMSERVE_CHECKPOINT_DIR; default <data-dir>/checkpoints).") var checkpointDir: String?
    @Option(help: ArgumentHelp("sqlite:PATH or postgres://user:password@host:port/database[?host=/socket/dir&schema=NAME] (MIMSERVE_DATABASE; default sqlite:<data-dir>/mimserve.sqlite; a worker needs postgres).", valueName: "location")) var database: String?
    @Option(help: "Jobs trained at once; 0 for an API node that leaves training to workers (MIMSERVE_TRAINER_SLOTS; default 1).") var trainerSlots: Int?
    @Option(help: "Seconds a claimed job is held without a heartbeat; renewed every third of it (MIMSERVE_LEASE_SECONDS; default 30).") var leaseSeconds: Double?
    @Option(help: "Nice value 0…19 of the trainer slots' threads, so requests come first (MIMSERVE_TRAINER_NICE; default 0).") var trainerNice: Int?
    @Option(help: "trace, debug, info, notice, warning or error (MIMSERVE_LOG_LEVEL; default info).") var logLevel: String?
    @Option(help: "SQL migrations folder, holding sqlite/ and postgres/ (MIMSERVE_MIGRATIONS; default: Migrations/ found near the executable).") var migrationsDir: String?
    @Option(help: "Fashion-MNIST IDX folder (MIMSERVE_FASHION_MNIST_DIR; default Debian's).") var fashionMnistDir: String?

    func apply(to c: inout ServerConfiguration, _ env: EnvironmentSettings, defaultPort: Int) throws {
        c.host = try env.pick(host, "HOST", { $0 }) ?? c.host
        c.port = try env.pick(port, "PORT", Int.init) ?? defaultPort
        c.dataDir = try env.pick(dataDir, "DATA_DIR", { $0 }) ?? c.dataDir
        c.checkpointDir = try env.pick(checkpointDir, "CHECKPOINT_DIR", { $0 })
        c.database = try env.pick(database, "DATABASE", { $0 })
        c.trainerSlots = try env.pick(trainerSlots, "TRAINER_SLOTS", Int.init) ?? c.trainerSlots
        c.leaseSeconds = try env.pick(leaseSeconds, "LEASE_SECONDS", Double.init) ?? c.leaseSeconds
        c.trainerNice = try env.pick(trainerNice, "TRAINER_NICE", Int.init) ?? c.trainerNice
        c.logLevel = try env.pick(logLevel, "LOG_LEVEL", { $0 }) ?? c.logLevel
        c.migrationsDir = try env.pick(migrationsDir, "MIGRATIONS", { $0 })
        c.fashionMNISTDir = try env.pick(fashionMnistDir, "FASHION_MNIST_DIR", { $0 })
    }
}
