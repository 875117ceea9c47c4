import ArgumentParser
import Models

/// `mimserve export-hf FILE.safetensors --output DIR`: MAE weights (a training checkpoint or a file
/// `import-hf` wrote) to a directory that `ViTMAEForPreTraining.from_pretrained` loads.
struct ExportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Convert MIMServe MAE weights into a Hugging Face ViTMAEForPreTraining directory.")

    @Argument(help: "A MIMServe weights file: a training checkpoint or a file written by import-hf.")
    var weights: String

    @Option(name: .shortAndLong, help: "Directory to write config.json and model.safetensors into (created if needed).")
    var output: String

    func run() throws {
        let file: WeightsFile
        do { file = try WeightsFile.read(path: weights) } catch { throw CommandFailure("\(weights): \(error)") }
        guard file.model.method == .mae else {
            throw CommandFailure("\(weights) holds a \(file.model.method.rawValue) model; only MAE exports to Hugging Face")
        }
        let model: any MIMModel
        do { model = try file.makeModel() } catch { throw CommandFailure("\(weights): \(error)") }
        guard let mae = model as? MAE else { preconditionFailure("an MAE config built a \(type(of: model))") }
        try HFViTMAE.export(mae, to: output)
        print("wrote \(output)/config.json and \(output)/model.safetensors")
    }
}

/// A subcommand's failure, printed as `Error: <message>`.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
