import ArgumentParser
import Models

/// `mimserve export-hf FILE.safetensors --output DIR`: a MIMServe MAE weights file to a
/// directory that `ViTMAEForPreTraining.from_pretrained` loads.
struct ExportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Convert MIMServe MAE weights into a Hugging Face ViTMAEForPreTraining directory.")

    @Argument(help: "A MIMServe weights file (written by import-hf or training).")
    var weights: String

    @Option(name: .shortAndLong, help: "Directory to write config.json and model.safetensors into (created if needed).")
    var output: String

    func run() throws {
        let model = try WeightsFile.readMAE(path: weights)
        try HFViTMAE.export(model, to: output)
        print("wrote \(output)/config.json and \(output)/model.safetensors")
    }
}
