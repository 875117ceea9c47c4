import ArgumentParser
import Foundation
import Models
import Server
import Store
import Trainer

extension ExportFormat: ExpressibleByArgument {}

/// `mimserve export-hf (FILE.safetensors | --job ID [--step N]) [--format hf|timm] --output DIR`:
/// weights to a directory that transformers (`hf`, the whole pretraining model) or timm (`timm`,
/// the encoder) loads. A job's checkpoint is found through the database and the checkpoint
/// directory, which the same flags and MIMSERVE_* variables as `mimserve serve` locate.
struct ExportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Export MIMServe weights (a file, or a job's checkpoint) to Hugging Face transformers or timm.")

    @Argument(help: "A MIMServe weights file: a training checkpoint or a file written by import-hf. Or use --job.")
    var weights: String?

    @Option(help: "Export a checkpoint of this job instead of a file.") var job: String?
    @Option(help: "With --job: the checkpoint's step (default: the job's newest checkpoint).") var step: Int?
    @Option(help: "hf: the whole model for transformers (MAE: ViTMAEForPreTraining, SimMIM: SwinForMaskedImageModeling); timm: the encoder for timm (MAE, SimMIM, GreenMIM). A fine-tuning checkpoint exports its classifier: to timm with its head, or to transformers as ViTForImageClassification (MAE with pool cls) or SwinForImageClassification (SimMIM, GreenMIM).")
    var format: ExportFormat = .hf

    @Option(name: .shortAndLong, help: "Directory to write config.json and model.safetensors into (created if needed).")
    var output: String

    @Option(help: "With --job: data folder (MIMSERVE_DATA_DIR; default ./data).") var dataDir: String?
    @Option(help: "With --job: checkpoint folder (MIMSERVE_CHECKPOINT_DIR; default <data-dir>/checkpoints).") var checkpointDir: String?
    @Option(help: ArgumentHelp("With --job: sqlite:PATH or postgres://… (MIMSERVE_DATABASE; default sqlite:<data-dir>/mimserve.sqlite).",
                               valueName: "location")) var database: String?

    func validate() throws {
        if weights != nil && job != nil { throw ValidationError("give a weights file or --job, not both") }
        if weights == nil && job == nil { throw ValidationError("give a weights file or --job") }
        if step != nil && job == nil { throw ValidationError("--step needs --job") }
    }

    func run() throws {
        let path = try job.map(checkpointFile) ?? weights!
        let file: WeightsFile
        do { file = try WeightsFile.read(path: path) } catch { throw CommandFailure("\(path): \(error)") }
        let files: [ExportedFile]
        do { files = try file.exportFiles(format) } catch { throw CommandFailure("\(path): \(error)") }
        do { try ModelExport.write(files, to: output) } catch { throw CommandFailure("\(error)") }
        let what = file.finetune.map { "a \($0.classes)-class classifier" } ?? "pretraining model"
        print("wrote \(output)/config.json and \(output)/model.safetensors (\(file.model.method.rawValue) \(what), \(format.rawValue))")
    }

    /// The file of the job's checkpoint at `step`, or of its newest.
    func checkpointFile(job id: String) throws -> String {
        let env = EnvironmentSettings()
        var c = ServerConfiguration()
        c.dataDir = try env.pick(dataDir, "DATA_DIR", { $0 }) ?? c.dataDir
        c.checkpointDir = try env.pick(checkpointDir, "CHECKPOINT_DIR", { $0 })
        c.database = try env.pick(database, "DATABASE", { $0 })
        let location = try c.databaseLocation()
        // Opening a SQLite path creates a database: a mistyped --data-dir must not.
        if case .sqlite(let path) = location, !FileManager.default.fileExists(atPath: path) {
            throw CommandFailure("no database at \(path) (set --database or --data-dir)")
        }
        let store = try Store(location, migrations: MigrationSet.locate(dialect: location.dialect))
        guard try store.job(id) != nil else { throw CommandFailure("no job \(id) in \(location)") }
        let record = try step.map { try store.checkpoint(jobID: id, step: $0) } ?? store.latestCheckpoint(jobID: id)
        guard let record else {
            throw CommandFailure(step.map { "job \(id) has no checkpoint at step \($0)" } ?? "job \(id) has no checkpoint yet")
        }
        let url = CheckpointDirectory(root: c.checkpointRoot).url(record.path)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CommandFailure("the checkpoint file of job \(id) at step \(record.step) is gone: \(url.path)")
        }
        return url.path
    }
}

/// A subcommand's failure, printed as `Error: <message>`.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
