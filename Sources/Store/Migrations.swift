import Foundation
import GRDB

/// The SQL files of one dialect's migrations folder (`Migrations/sqlite/` or
/// `Migrations/postgres/`), in order. Each `NNNN_what.sql` runs once, inside a transaction, and
/// is recorded by name, so a database is always at a known version and a file is never applied
/// twice. Both folders carry the same numbers and names: a release adds a file to each.
public struct MigrationSet: Sendable {
    public struct File: Sendable, Equatable {
        public let name: String
        public let sql: String
    }

    /// The SQL a folder is written in; it names the folder under `Migrations/`.
    public enum Dialect: String, Sendable, CaseIterable {
        case sqlite, postgres
    }

    public let directory: URL
    public let files: [File]

    /// Reads every `NNNN_*.sql` in `directory`; numbering must start at 1 with no gaps or repeats.
    public init(directory: URL) throws(StoreError) {
        self.directory = directory
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }.sorted()
        } catch {
            throw .migrations("cannot list \(directory.path): \(error.localizedDescription)")
        }
        guard !names.isEmpty else { throw .migrations("no .sql files in \(directory.path)") }
        var files: [File] = []
        for (i, name) in names.enumerated() {
            let number = name.prefix { $0.isNumber }
            guard number.count == 4, name.dropFirst(4).first == "_", Int(number) == i + 1 else {
                throw .migrations("\(name): migrations must be named NNNN_what.sql and numbered 0001, 0002, … without gaps")
            }
            guard let sql = try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8) else {
                throw .migrations("cannot read \(name) as UTF-8")
            }
            files.append(File(name: String(name.dropLast(4)), sql: sql))
        }
        self.files = files
    }

    /// Finds `Migrations/<dialect>/` whatever the working directory: under an explicit folder
    /// (flag or `MIMSERVE_MIGRATIONS`, the folder that holds `sqlite/` and `postgres/`) when
    /// given; else beside the executable or in `../share/mimserve` (installed and container
    /// layouts); then the source tree this file was built from (`swift run`, `swift test`); then
    /// the working directory.
    public static func locate(explicit: String? = nil, dialect: Dialect = .sqlite,
                              environment: [String: String] = ProcessInfo.processInfo.environment,
                              sourceFile: String = #filePath) throws(StoreError) -> MigrationSet {
        if let path = explicit ?? environment["MIMSERVE_MIGRATIONS"], !path.isEmpty {
            return try MigrationSet(directory: URL(fileURLWithPath: path).appendingPathComponent(dialect.rawValue))
        }
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        let sourceRoot = URL(fileURLWithPath: sourceFile).deletingLastPathComponent()  // Sources/Store
            .deletingLastPathComponent().deletingLastPathComponent()
        let candidates = [
            executable.appendingPathComponent("Migrations"),
            executable.appendingPathComponent("../share/mimserve/Migrations").standardized,
            sourceRoot.appendingPathComponent("Migrations"),
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Migrations"),
        ].map { $0.appendingPathComponent(dialect.rawValue) }
        for dir in candidates where FileManager.default.fileExists(atPath: dir.appendingPathComponent("0001_initial.sql").path) {
            return try MigrationSet(directory: dir)
        }
        throw .migrations("Migrations/\(dialect.rawValue)/ not found (looked in \(candidates.map(\.path).joined(separator: ", "))); set MIMSERVE_MIGRATIONS")
    }

    /// Names recorded in a database that this set does not know: a newer MIMServe wrote them.
    func unknown(among applied: some Sequence<String>) -> [String] {
        Set(applied).subtracting(files.map(\.name)).sorted()
    }

    var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        for file in files {
            m.registerMigration(file.name) { db in try db.execute(sql: file.sql) }
        }
        return m
    }
}
