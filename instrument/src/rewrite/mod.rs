//! Module assembly: copies every section of the input, appending the ABI's globals and
//! exports, dropping the start section, rewriting the code section, and adding the
//! `ri_sandbox` custom section.
//!
//! Sections that need no change are copied byte for byte; so are the entries of the global
//! and export sections, to which the ABI's entries are appended.

mod bodies;
pub(crate) mod body;
mod bulk;
mod code;
mod entry;
mod gas;
mod limits;
mod loops;
mod nan;
mod stack;

pub(crate) use body::LocalMap;

use crate::abi::{self, AbiInfo};
use crate::analyze::{self, invalid, PendingFunction, Plan};
use crate::error::{Error, ErrorKind};
use crate::{Options, Stats};
use wasm_encoder::Encode;
use wasmparser::{BinaryReader, Encoding, Parser, Payload, ValidPayload, Validator, WasmFeatures};

const CUSTOM: u8 = 0;
const TYPE: u8 = 1;
const FUNCTION: u8 = 3;
const GLOBAL: u8 = 6;
const EXPORT: u8 = 7;
const START: u8 = 8;

/// Position of a section id in the order the binary format requires; custom sections have
/// none.
fn order(id: u8) -> Option<u8> {
    Some(match id {
        1..=5 => id, // type, import, function, table, memory
        13 => 6,     // tag
        6 => 7,      // global
        7 => 8,      // export
        8 => 9,      // start
        9 => 10,     // element
        12 => 11,    // data count
        10 => 12,    // code
        11 => 13,    // data
        _ => return None,
    })
}

/// Facts gathered from section headers before rewriting starts.
#[derive(Default)]
struct Survey {
    imported_globals: u32,
    defined_globals: u32,
    start: Option<u32>,
    imported_memories: u32,
    defined_memories: u32,
    imported_tables: u32,
    defined_tables: u32,
    /// Indices of the module's own mutable globals.
    mutable_globals: Vec<u32>,
    /// Functions a `funcref` value can name: those in element segments, global initialisers
    /// and exports (the module's declared references).
    referenced_functions: std::collections::BTreeSet<u32>,
    /// Types, function types and exported functions, for entry points.
    functions: entry::Functions,
    /// How many functions the module defines.
    defined_functions: u32,
    /// The size of every type (rec groups flattened), as [`limits`] counts them.
    type_sizes: Vec<u64>,
    /// The type index of every tag, imports first.
    tag_types: Vec<u32>,
    /// The input's counts of what [`limits`] checks.
    counts: limits::Counts,
}

impl Survey {
    /// The size of type `index` ([`limits::sub_type_size`]); an index out of range is the
    /// validator's to refuse.
    fn type_size(&self, index: u32) -> u64 {
        self.type_sizes.get(index as usize).copied().unwrap_or(1)
    }

    /// The size of function `index`'s type.
    fn function_type_size(&self, index: u32) -> u64 {
        match self.functions.function_types.get(index as usize) {
            Some(&ty) => self.type_size(ty),
            None => 1,
        }
    }

    /// The size of tag `index`'s type.
    fn tag_type_size(&self, index: u32) -> u64 {
        match self.tag_types.get(index as usize) {
            Some(&ty) => self.type_size(ty),
            None => 1,
        }
    }

    /// The size an import of this type adds to the effective type size.
    fn entity_size(&self, ty: &wasmparser::TypeRef) -> u64 {
        match *ty {
            wasmparser::TypeRef::Func(index) | wasmparser::TypeRef::FuncExact(index) => {
                self.type_size(index)
            }
            wasmparser::TypeRef::Tag(tag) => self.type_size(tag.func_type_idx),
            _ => 1,
        }
    }
}

/// A first, cheap pass over section headers: the global count (the gas global's index) and
/// the start function must be known before the sections that precede them are written.
/// Types and exported functions' names are kept only for `entry_points`.
fn survey(wasm: &[u8], entry_points: bool) -> Result<Survey, Error> {
    let mut survey = Survey::default();
    let mut reserved = None;
    let mut already_instrumented = false;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::Version {
                encoding, range, ..
            } if encoding != Encoding::Module => {
                return Err(Error::new(ErrorKind::Unsupported {
                    message: "components are not supported; instrument the core modules".into(),
                    offset: range.start,
                }));
            }
            Payload::ImportSection(reader) => {
                for imports in reader {
                    for import in imports.map_err(invalid)? {
                        let (_, import) = import.map_err(invalid)?;
                        survey.functions.add_import(&import.ty);
                        survey.counts.type_size += survey.entity_size(&import.ty);
                        match import.ty {
                            wasmparser::TypeRef::Tag(tag) => {
                                survey.tag_types.push(tag.func_type_idx)
                            }
                            wasmparser::TypeRef::Global(_) => survey.imported_globals += 1,
                            wasmparser::TypeRef::Memory(_) => survey.imported_memories += 1,
                            wasmparser::TypeRef::Table(_) => survey.imported_tables += 1,
                            _ => {}
                        }
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                survey.defined_globals = reader.count();
                for (i, global) in reader.into_iter().enumerate() {
                    let global = global.map_err(invalid)?;
                    if global.ty.mutable {
                        survey
                            .mutable_globals
                            .push(survey.imported_globals + i as u32);
                    }
                    refs_in(&global.init_expr, &mut survey.referenced_functions)?;
                }
            }
            Payload::TypeSection(reader) => {
                // (A count the section's bytes cannot hold is not believed.)
                survey
                    .type_sizes
                    .reserve((reader.count() as usize).min(reader.range().len()));
                for group in reader {
                    for ty in group.map_err(invalid)?.into_types() {
                        survey.type_sizes.push(limits::sub_type_size(&ty));
                        if entry_points {
                            survey.functions.add_type(ty);
                        }
                    }
                }
            }
            Payload::TagSection(reader) => {
                for tag in reader {
                    survey.tag_types.push(tag.map_err(invalid)?.func_type_idx);
                }
            }
            Payload::FunctionSection(reader) => {
                survey.defined_functions = reader.count();
                survey
                    .functions
                    .function_types
                    .reserve((reader.count() as usize).min(reader.range().len()));
                for ty in reader {
                    survey.functions.function_types.push(ty.map_err(invalid)?);
                }
            }
            Payload::MemorySection(reader) => survey.defined_memories = reader.count(),
            Payload::TableSection(reader) => survey.defined_tables = reader.count(),
            Payload::ElementSection(reader) => {
                for element in reader {
                    match element.map_err(invalid)?.items {
                        wasmparser::ElementItems::Functions(funcs) => {
                            for func in funcs {
                                survey.referenced_functions.insert(func.map_err(invalid)?);
                            }
                        }
                        wasmparser::ElementItems::Expressions(_, exprs) => {
                            for expr in exprs {
                                refs_in(&expr.map_err(invalid)?, &mut survey.referenced_functions)?;
                            }
                        }
                    }
                }
            }
            Payload::StartSection { func, .. } => survey.start = Some(func),
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    survey.counts.exports += 1;
                    survey.counts.type_size += match export.kind {
                        wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => {
                            survey.function_type_size(export.index)
                        }
                        wasmparser::ExternalKind::Tag => survey.tag_type_size(export.index),
                        _ => 1,
                    };
                    if export.name.starts_with(abi::RESERVED_PREFIX) && reserved.is_none() {
                        reserved = Some(export.name.to_string());
                    }
                    if export.kind == wasmparser::ExternalKind::Func {
                        survey.referenced_functions.insert(export.index);
                        if entry_points {
                            survey
                                .functions
                                .exported
                                .push((export.name.to_string(), export.index));
                        }
                    }
                }
            }
            Payload::CustomSection(reader) if reader.name() == abi::SECTION_NAME => {
                already_instrumented = true;
            }
            _ => {}
        }
    }
    // An instrumented module also exports reserved names: say what really happened.
    if already_instrumented {
        return Err(Error::new(ErrorKind::AlreadyInstrumented));
    }
    if let Some(name) = reserved {
        return Err(Error::new(ErrorKind::ReservedName { name }));
    }
    survey.counts.types = survey.type_sizes.len() as u64;
    survey.counts.functions = survey.functions.function_types.len() as u64;
    survey.counts.globals = u64::from(survey.imported_globals) + u64::from(survey.defined_globals);
    Ok(survey)
}

/// Adds the functions a constant expression names with `ref.func`.
fn refs_in(
    expr: &wasmparser::ConstExpr<'_>,
    refs: &mut std::collections::BTreeSet<u32>,
) -> Result<(), Error> {
    let mut ops = expr.get_operators_reader();
    while !ops.eof() {
        if let wasmparser::Operator::RefFunc { function_index } = ops.read().map_err(invalid)? {
            refs.insert(function_index);
        }
    }
    Ok(())
}

/// `value` in decimal, written into `buffer`.
fn itoa(mut value: u32, buffer: &mut [u8; 10]) -> &str {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    std::str::from_utf8(&buffer[start..]).unwrap_or_default()
}

/// Writes sections into the output.
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn section(&mut self, id: u8, contents: &[u8]) {
        self.out.push(id);
        (contents.len() as u32).encode(&mut self.out);
        self.out.extend_from_slice(contents);
    }

    /// Copies the vector section at `range` with `added` already-encoded entries appended.
    fn extended(
        &mut self,
        id: u8,
        wasm: &[u8],
        range: std::ops::Range<usize>,
        added: u32,
        new: &[u8],
    ) -> Result<(), Error> {
        let (count, old) = entries_of(wasm, range)?;
        let mut contents = Vec::with_capacity(old.len() + new.len() + 5);
        (count + added).encode(&mut contents);
        contents.extend_from_slice(old);
        contents.extend_from_slice(new);
        self.section(id, &contents);
        Ok(())
    }
}

/// The entries of a vector section (everything after its count), with the count.
fn entries_of(wasm: &[u8], range: std::ops::Range<usize>) -> Result<(u32, &[u8]), Error> {
    let mut reader = BinaryReader::new(&wasm[range.clone()], range.start);
    let count = reader.read_var_u32().map_err(invalid)?;
    let start = reader.original_position();
    Ok((count, &wasm[start..range.end]))
}

/// Rewrites a whole module. Validation happens in the same pass.
pub(crate) fn rewrite_module(
    wasm: &[u8],
    options: &Options,
    features: WasmFeatures,
) -> Result<(Vec<u8>, Stats), Error> {
    // Insertion offsets are `u32`; no engine accepts a module anywhere near this size.
    if u32::try_from(wasm.len()).is_err() {
        return Err(Error::new(ErrorKind::Limit {
            message: "modules of 4 GiB or more are not supported".into(),
        }));
    }
    let survey = survey(wasm, options.entry_points)?;
    let gas_global = survey
        .imported_globals
        .checked_add(survey.defined_globals)
        .filter(|n| *n < u32::MAX)
        .ok_or_else(|| {
            Error::new(ErrorKind::Limit {
                message: "too many globals to add the gas counter".into(),
            })
        })?;

    let stack_global = options.stack_limit.map(|_| gas_global + 1);
    if stack_global == Some(u32::MAX) {
        return Err(Error::new(ErrorKind::Limit {
            message: "too many globals to add the stack counter".into(),
        }));
    }

    // The ABI's additions, encoded once: `(global (mut i64) (i64.const INIT))` entries.
    let mut new_globals = Vec::with_capacity(32);
    let mut new_global_count = 0;
    let mut add_global = |init: i64| {
        new_globals.extend_from_slice(&[0x7e, 0x01, 0x42]);
        init.encode(&mut new_globals);
        new_globals.push(0x0b);
        new_global_count += 1;
    };
    add_global(0);
    if let Some(limit) = options.stack_limit {
        add_global(i64::try_from(limit).unwrap_or(i64::MAX));
    }
    // What the additions count against the engines' limits (see `limits`).
    let mut added = limits::Counts {
        globals: u64::from(new_global_count),
        type_size: 1,
        ..limits::Counts::default()
    };
    // (Room for the state exports' names, about 20 bytes each.)
    let state_exports = survey.referenced_functions.len() + survey.mutable_globals.len();
    let mut new_exports = Vec::with_capacity(64 + 24 * state_exports);
    let mut new_export_count = 1;
    abi::GAS_LEFT_EXPORT.encode(&mut new_exports);
    new_exports.push(0x03); // global
    gas_global.encode(&mut new_exports);
    if let Some(stack_global) = stack_global {
        abi::STACK_LEFT_EXPORT.encode(&mut new_exports);
        new_exports.push(0x03);
        stack_global.encode(&mut new_exports);
        new_export_count += 1;
        added.type_size += 1;
    }
    if let Some(start) = survey.start {
        abi::START_EXPORT.encode(&mut new_exports);
        new_exports.push(0x00); // function
        start.encode(&mut new_exports);
        new_export_count += 1;
        added.type_size += survey.function_type_size(start);
    }
    if options.export_state {
        let mut name = String::new();
        // `type_size`: what the export adds to the effective type size (see `limits`).
        let mut export = |prefix: &str, kind: u8, index: u32, type_size: u64| {
            name.clear();
            name.push_str(prefix);
            name.push_str(itoa(index, &mut [0; 10]));
            name.as_str().encode(&mut new_exports);
            new_exports.push(kind);
            index.encode(&mut new_exports);
            new_export_count += 1;
            added.type_size += type_size;
        };
        let memories = survey.imported_memories..survey.imported_memories + survey.defined_memories;
        for index in memories {
            export(abi::MEMORY_EXPORT_PREFIX, 0x02, index, 1);
        }
        let tables = survey.imported_tables..survey.imported_tables + survey.defined_tables;
        for index in tables {
            export(abi::TABLE_EXPORT_PREFIX, 0x01, index, 1);
        }
        for &index in &survey.mutable_globals {
            export(abi::GLOBAL_EXPORT_PREFIX, 0x03, index, 1);
        }
        for &index in &survey.referenced_functions {
            let type_size = survey.function_type_size(index);
            export(abi::FUNC_EXPORT_PREFIX, 0x00, index, type_size);
        }
    }

    // Entry points need a code section to go into.
    let entries = if options.entry_points && survey.defined_functions > 0 {
        let stack = stack_global.map(|g| {
            let limit = options.stack_limit.unwrap_or(0);
            (g, i64::try_from(limit).unwrap_or(i64::MAX))
        });
        let entries = entry::plan(&survey.functions, gas_global, stack)?;
        new_exports.extend_from_slice(&entries.exports);
        new_export_count += entries.exports_count;
        added.functions = u64::from(entries.count);
        added.types = u64::from(entries.type_count);
        added.type_size += entries.type_size;
        Some(entries)
    } else {
        None
    };
    added.exports = u64::from(new_export_count);
    limits::check(survey.counts, added)?;

    let mut validator = Validator::new_with_features(features);
    let mut writer = Writer {
        // The defaults about double a compiled program's size.
        out: Vec::with_capacity(2 * wasm.len() + 64),
    };
    let mut globals_written = false;
    let mut exports_written = false;
    let context = body::Context {
        gas_global,
        stack_global,
        costs: &options.costs,
    };
    let plan = Plan {
        costs: &options.costs,
        stack_limit: options.stack_limit.is_some(),
        canonicalize_nans: options.canonicalize_nans,
        eager_nans: options.eager_nan_canonicalization,
    };
    let mut stats = Stats {
        bytes_in: wasm.len(),
        ..Stats::default()
    };
    // The code section is written straight into the output, its size patched in at the end.
    let mut code_size_at = 0usize;
    let mut code_remaining = 0u32;
    // Function bodies are planned once the whole code section is read, so several threads can
    // share the work (`analyze::functions`); then every call site can pre-pay its callees'
    // entry blocks, and reloads can depend on what callees do (`analyze::calls`).
    let mut pending: Vec<PendingFunction<'_>> = Vec::new();
    let calls_module = analyze::calls::Module {
        imported: survey.functions.imported_count(survey.defined_functions),
        referenced: &survey.referenced_functions,
        start: survey.start,
    };

    for payload in Parser::new(0).parse_all(wasm) {
        // (`survey` has read every payload already: a malformed one is reported before any
        // body is validated, and never gets here.)
        let payload = payload.map_err(invalid)?;
        let valid = validator.payload(&payload).map_err(invalid)?;
        // A module without a global or export section gets one just before the first section
        // that must follow it.
        if let Some(position) = payload.as_section().and_then(|(id, _)| order(id)) {
            if !globals_written && position > 7 {
                writer.section(GLOBAL, &counted(new_global_count, &new_globals));
                globals_written = true;
            }
            if !exports_written && position > 8 {
                writer.section(EXPORT, &counted(new_export_count, &new_exports));
                exports_written = true;
            }
        }
        match &payload {
            Payload::Version { .. } => writer.out.extend_from_slice(&wasm[..8]),
            Payload::CodeSectionStart { count, range, .. } => {
                // (Every body takes at least two bytes: a count the section cannot hold is
                // not believed.)
                pending.reserve((*count as usize).min(range.len() / 2));
                writer.out.push(10);
                code_size_at = writer.out.len();
                writer
                    .out
                    .extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x00]);
                let added = entries.as_ref().map_or(0, |e| e.count);
                (count + added).encode(&mut writer.out);
                code_remaining = *count;
                if code_remaining == 0 {
                    if let Some(entries) = &entries {
                        writer.out.extend_from_slice(&entries.bodies);
                    }
                    patch_size(&mut writer.out, code_size_at);
                }
            }
            Payload::CodeSectionEntry(body) => {
                let ValidPayload::Func(func, _) = valid else {
                    return Err(Error::new(ErrorKind::Internal {
                        message: "the validator returned no function for a code entry".into(),
                    }));
                };
                pending.push(PendingFunction {
                    func,
                    body: body.clone(),
                });
                code_remaining -= 1;
                if code_remaining == 0 {
                    let ranges: Vec<_> = pending.iter().map(|f| f.body.range()).collect();
                    let functions = std::mem::take(&mut pending);
                    let mut plans =
                        analyze::plan_functions(functions, features, plan, options.threads)?;
                    if let Some(max) = options.max_locals {
                        limits::check_locals(&plans.functions, max)?;
                    }
                    let reloads = analyze::calls::finish(&mut plans, &calls_module);
                    stats.functions += plans.functions.len();
                    stats.blocks_metered += bodies::write_bodies(
                        wasm,
                        plans,
                        &ranges,
                        &context,
                        &reloads,
                        options.threads,
                        &mut writer.out,
                    )?;
                    if let Some(entries) = &entries {
                        writer.out.extend_from_slice(&entries.bodies);
                    }
                    patch_size(&mut writer.out, code_size_at);
                }
            }
            Payload::End(_) => {}
            other => {
                let Some((id, range)) = other.as_section() else {
                    // Payloads of components never get here: `survey` refused them.
                    continue;
                };
                match id {
                    GLOBAL => {
                        writer.extended(GLOBAL, wasm, range, new_global_count, &new_globals)?;
                        globals_written = true;
                    }
                    EXPORT => {
                        writer.extended(EXPORT, wasm, range, new_export_count, &new_exports)?;
                        exports_written = true;
                    }
                    TYPE | FUNCTION if entries.is_some() => {
                        let Some(e) = &entries else { continue };
                        let (added, new) = if id == TYPE {
                            (e.type_count, &e.types)
                        } else {
                            (e.count, &e.functions)
                        };
                        writer.extended(id, wasm, range, added, new)?;
                    }
                    START => {}
                    CUSTOM if matches!(other, Payload::CustomSection(c) if c.name() == "name") => {
                        writer.section(CUSTOM, &without_label_names(wasm, range));
                    }
                    _ => writer.section(id, &wasm[range]),
                }
            }
        }
    }
    if !globals_written {
        writer.section(GLOBAL, &counted(new_global_count, &new_globals));
    }
    if !exports_written {
        writer.section(EXPORT, &counted(new_export_count, &new_exports));
    }
    let info = AbiInfo {
        version: abi::ABI_VERSION,
        cost_fingerprint: options.costs.fingerprint(),
        flags: if options.canonicalize_nans {
            abi::FLAG_CANONICAL_NANS
        } else {
            0
        } | if options.export_state {
            abi::FLAG_STATE_EXPORTS
        } else {
            0
        } | if entries.is_some() {
            abi::FLAG_ENTRY_POINTS
        } else {
            0
        },
        stack_limit: options.stack_limit,
    };
    let mut custom = Vec::new();
    abi::SECTION_NAME.encode(&mut custom);
    custom.extend_from_slice(&info.encode());
    writer.section(CUSTOM, &custom);

    stats.bytes_out = writer.out.len();
    Ok((writer.out, stats))
}

/// Writes the size of the section whose 5-byte size field is at `at` (everything after the
/// field), as a 5-byte LEB128: padded encodings are valid, and the field's width is fixed
/// before the size is known.
fn patch_size(out: &mut [u8], at: usize) {
    let size = (out.len() - at - 5) as u32;
    for i in 0..5 {
        let group = ((size >> (7 * i)) & 0x7f) as u8;
        out[at + i] = if i < 4 { group | 0x80 } else { group };
    }
}

/// A vector's contents: its count followed by already-encoded entries.
fn counted(count: u32, entries: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() + 5);
    count.encode(&mut out);
    out.extend_from_slice(entries);
    out
}

/// The name section without its label-names subsection (id 3): the blocks the metering code
/// inserts shift every later label's index, so those names would point at the wrong labels.
/// A name section that does not parse is kept as it is (it does not affect validity).
fn without_label_names(wasm: &[u8], range: std::ops::Range<usize>) -> Vec<u8> {
    let original = &wasm[range.clone()];
    let parse = || -> Result<Vec<u8>, wasmparser::BinaryReaderError> {
        let mut reader = BinaryReader::new(original, range.start);
        let mut out = Vec::with_capacity(original.len());
        let name = reader.read_string()?;
        name.encode(&mut out);
        while !reader.eof() {
            let start = reader.current_position();
            let id = reader.read_u8()?;
            let len = reader.read_var_u32()? as usize;
            reader.read_bytes(len)?;
            if id != 3 {
                out.extend_from_slice(&original[start..reader.current_position()]);
            }
        }
        Ok(out)
    };
    parse().unwrap_or_else(|_| original.to_vec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn itoa_writes_decimal() {
        for value in [0u32, 7, 10, 99, 100, 12345, u32::MAX] {
            assert_eq!(super::itoa(value, &mut [0; 10]), value.to_string());
        }
    }
}
