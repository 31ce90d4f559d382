//! Crates made for browsers leave wasm-bindgen imports in a `wasm32-unknown-unknown` module
//! (chrono's `wasmbind` clock, which `openidconnect` turns on, is one). The host runs no
//! JavaScript and a component cannot import them, so each becomes a function of the same type
//! that traps: a plugin that calls one is a plugin bug the host reports. Time and randomness
//! come from the host's capabilities (`clock`, `random`) instead.

use wasm_encoder::reencode::{self, Reencode};
use wasmparser::{Parser, Payload, TypeRef};

/// The import modules wasm-bindgen's code links against.
pub const BROWSER_MODULES: &[&str] = &["__wbindgen_placeholder__", "__wbindgen_externref_xform__"];

/// The module with every browser import replaced by a trapping function, and how many there were.
pub fn stub_browser_imports(core: &[u8]) -> anyhow::Result<(Vec<u8>, usize)> {
    // Where every function index goes: kept imports first, then the module's own functions,
    // then one stub per browser import.
    let mut imports = Vec::new();
    let mut defined = 0u32;
    for payload in Parser::new(0).parse_all(core) {
        match payload? {
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import?;
                    let browser = BROWSER_MODULES.contains(&import.module);
                    match import.ty {
                        TypeRef::Func(ty) => imports.push((browser, ty)),
                        // Only functions are stubbed; anything else of the browser's would leave
                        // other indices pointing elsewhere.
                        other if browser => anyhow::bail!(
                            "{}::{} is a browser import the tool cannot replace ({other:?})",
                            import.module,
                            import.name
                        ),
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(section) => defined = section.count(),
            _ => {}
        }
    }
    let stub_types: Vec<u32> = imports
        .iter()
        .filter(|(browser, _)| *browser)
        .map(|(_, ty)| *ty)
        .collect();
    if stub_types.is_empty() {
        return Ok((core.to_vec(), 0));
    }
    let kept = (imports.len() - stub_types.len()) as u32;
    let mut map = Vec::with_capacity(imports.len() + defined as usize);
    let (mut next_kept, mut next_stub) = (0u32, kept + defined);
    for (browser, _) in &imports {
        if *browser {
            map.push(next_stub);
            next_stub += 1;
        } else {
            map.push(next_kept);
            next_kept += 1;
        }
    }
    map.extend((0..defined).map(|d| kept + d));
    let mut stubber = Stubber { map, stub_types };
    let mut module = wasm_encoder::Module::new();
    stubber
        .parse_core_module(&mut module, Parser::new(0), core)
        .map_err(|e| anyhow::anyhow!("rewriting the module's browser imports: {e:?}"))?;
    let count = stubber.stub_types.len();
    Ok((module.finish(), count))
}

struct Stubber {
    map: Vec<u32>,
    stub_types: Vec<u32>,
}

impl Reencode for Stubber {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<Self::Error>> {
        Ok(self.map[func as usize])
    }

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        for import in section.into_imports() {
            let import = import?;
            if !BROWSER_MODULES.contains(&import.module) {
                self.parse_import(imports, import)?;
            }
        }
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_function_section(self, functions, section)?;
        for ty in &self.stub_types {
            functions.function(*ty);
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_code_section(self, code, section)?;
        for _ in &self.stub_types {
            let mut body = wasm_encoder::Function::new([]);
            body.instruction(&wasm_encoder::Instruction::Unreachable);
            body.instruction(&wasm_encoder::Instruction::End);
            code.function(&body);
        }
        Ok(())
    }

    fn parse_custom_section(
        &mut self,
        module: &mut wasm_encoder::Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        // Debug names would name the wrong functions now; everything else is kept.
        if section.name() == "name" {
            return Ok(());
        }
        reencode::utils::parse_custom_section(self, module, section)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_imports_become_traps_and_calls_follow_their_functions() {
        let wat = r#"(module
            (import "host" "log" (func $log (param i32)))
            (import "__wbindgen_placeholder__" "__wbg_now" (func $now (result f64)))
            (import "host" "time" (func $time (result i64)))
            (func $uses_log (export "run") (param i32) (call $log (local.get 0)) (call $helper))
            (func $helper (drop (call $time)))
            (func $uses_now (export "now") (result f64) (call $now))
            (table 1 funcref) (elem (i32.const 0) $helper))"#;
        let core = wat::parse_str(wat).unwrap();
        let (stubbed, count) = stub_browser_imports(&core).unwrap();
        assert_eq!(count, 1);
        wasmparser::Validator::new().validate_all(&stubbed).unwrap();
        let printed = wasmprinter::print_bytes(&stubbed).unwrap();
        assert!(!printed.contains("__wbindgen"), "{printed}");
        // Imports log (0) and time (1); run (2) calls log and helper (3); helper calls time;
        // now (4) calls the stub (5), which traps.
        assert!(
            printed.contains("call 0") && printed.contains("call 3") && printed.contains("call 1"),
            "{printed}"
        );
        assert!(printed.contains("call 5"), "{printed}");
        assert!(printed.contains("unreachable"), "{printed}");
        assert!(
            printed.contains("elem (;0;) (i32.const 0) func 3"),
            "{printed}"
        );
        let untouched =
            wat::parse_str(r#"(module (import "host" "log" (func (param i32))))"#).unwrap();
        assert_eq!(stub_browser_imports(&untouched).unwrap(), (untouched, 0));
    }
}
