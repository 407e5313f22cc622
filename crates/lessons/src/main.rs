//! `lessons list` prints every lesson; `lessons <name>` runs one.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            eprintln!("usage: lessons list | lessons <name>");
            ExitCode::from(2)
        }
        [cmd] if cmd == "list" => {
            for l in lessons::LESSONS {
                println!("{:<18} {}", l.name, l.summary);
            }
            ExitCode::SUCCESS
        }
        [name] => match lessons::find(name) {
            Some(lesson) => match (lesson.run)() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lessons {name}: {e}");
                    ExitCode::from(1)
                }
            },
            None => {
                eprintln!("lessons: no lesson named '{name}' (try `lessons list`)");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("lessons: expected one argument: list, or a lesson name");
            ExitCode::from(2)
        }
    }
}
