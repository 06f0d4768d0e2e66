//! `frostnet plot-model` (a model's graph, coloured by what trains) and `frostnet plot-history`
//! (training curves from a CSV log), as SVG or PNG.

use frostnet::plot::{PlotOptions, RankDir};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Direction {
    /// Top to bottom.
    #[value(name = "TB")]
    Tb,
    /// Left to right.
    #[value(name = "LR")]
    Lr,
}

#[derive(clap::Args)]
pub struct PlotModelArgs {
    #[command(flatten)]
    model: crate::ModelArgs,
    /// Where to write the picture: `.svg`, or `.png` (rasterised at --dpi).
    #[arg(long)]
    output: String,
    /// Input and output shapes in every box.
    #[arg(long)]
    show_shapes: bool,
    /// `name (Class)` instead of the class alone.
    #[arg(long)]
    show_layer_names: bool,
    /// Colour boxes by what trains (frozen, partly frozen, BatchNormalization's state), with a legend.
    #[arg(long)]
    show_trainable: bool,
    /// Draw nested models' layers inside a box.
    #[arg(long)]
    expand_nested: bool,
    #[arg(long, value_enum, default_value = "TB")]
    rankdir: Direction,
    /// PNG resolution (96 = one SVG pixel per PNG pixel).
    #[arg(long, default_value_t = 96)]
    dpi: u32,
    /// Freeze `layers[:N]` first, Keras's fine-tuning recipe (`for layer in model.layers[:N]:
    /// layer.trainable = False`), to see what it leaves trainable.
    #[arg(long)]
    freeze: Option<usize>,
}

pub fn plot_model(args: &PlotModelArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut model = args.model.build()?;
    if let Some(n) = args.freeze {
        model.set_trainable_range(0..n, false)?;
    }
    let opts = PlotOptions {
        show_shapes: args.show_shapes,
        show_layer_names: args.show_layer_names,
        show_trainable: args.show_trainable,
        expand_nested: args.expand_nested,
        rankdir: match args.rankdir {
            Direction::Tb => RankDir::TB,
            Direction::Lr => RankDir::LR,
        },
        dpi: args.dpi,
    };
    frostnet::plot::plot_model(&model, &args.output, &opts)?;
    Ok(())
}

#[derive(clap::Args)]
pub struct PlotHistoryArgs {
    /// A CSV written by the CsvLogger callback (or Keras's CSVLogger): `epoch,` then one column
    /// per logged name.
    csv: String,
    /// Where to write the picture: `.svg`, or `.png` (rasterised at --dpi).
    #[arg(long)]
    output: String,
    /// PNG resolution (96 = one SVG pixel per PNG pixel).
    #[arg(long, default_value_t = 96)]
    dpi: u32,
}

pub fn plot_history(args: &PlotHistoryArgs) -> Result<(), Box<dyn std::error::Error>> {
    let history = frostnet::plot::read_history_csv(&args.csv)?;
    frostnet::plot::plot_history(&history, &args.output, args.dpi)?;
    Ok(())
}
