//! Entry points (ABI section 11): for every exported function (of at most
//! [`MAX_ENTRY_POINT_PARAMS`] parameters), a wrapper that takes the gas
//! budget as an extra first parameter and returns the gas left as an extra last result, so a
//! host makes one call instead of writing and reading the counter globals around it.
//!
//! ```wat
//! (func (param $budget i64) (param ...) (result ... i64)
//!   local.get $budget  global.set $gas_left
//!   i64.const LIMIT    global.set $stack_left     ;; with a stack limit
//!   local.get 1 ... local.get n
//!   call $f
//!   global.get $gas_left)
//! ```
//!
//! The wrapper itself is not metered: gas measures the input module's instructions.

use std::collections::HashMap;

use crate::abi::MAX_ENTRY_POINT_PARAMS;
use crate::error::Error;
use wasm_encoder::Encode;
use wasmparser::{CompositeInnerType, FuncType, TypeRef, ValType};

/// What the survey learns for entry points.
#[derive(Default)]
pub(crate) struct Functions {
    /// Types in the type section (rec groups flattened); `None` for non-function types.
    pub types: Vec<Option<FuncType>>,
    /// The type index of every function, imports first.
    pub function_types: Vec<u32>,
    /// Exported functions, in export order: name and function index.
    pub exported: Vec<(String, u32)>,
}

impl Functions {
    /// Records the next type of the type section.
    pub fn add_type(&mut self, ty: wasmparser::SubType) {
        self.types.push(match ty.composite_type.inner {
            CompositeInnerType::Func(f) => Some(f),
            _ => None,
        });
    }

    /// How many functions are imported, given how many the module defines: every function
    /// type recorded that is not a defined function's (imports are recorded first).
    pub fn imported_count(&self, defined: u32) -> u32 {
        (self.function_types.len() as u32).saturating_sub(defined)
    }

    pub fn add_import(&mut self, ty: &TypeRef) {
        if let TypeRef::Func(index) | TypeRef::FuncExact(index) = *ty {
            self.function_types.push(index);
        }
    }
}

/// The entry points to add, encoded.
pub(crate) struct Entries {
    /// New type section entries, and how many.
    pub types: Vec<u8>,
    pub type_count: u32,
    /// New function section entries (type indices), and how many.
    pub functions: Vec<u8>,
    pub count: u32,
    /// New code section entries (size-prefixed bodies).
    pub bodies: Vec<u8>,
    /// New export section entries, and how many.
    pub exports: Vec<u8>,
    pub exports_count: u32,
    /// What the new exports add to the effective type size (see `limits`).
    pub type_size: u64,
}

/// Plans one wrapper per exported function whose type is known and has at most
/// [`MAX_ENTRY_POINT_PARAMS`] parameters. `first_function` is the index
/// the first wrapper gets (the module's function count).
pub(crate) fn plan(
    functions: &Functions,
    gas_global: u32,
    stack: Option<(u32, i64)>,
) -> Result<Entries, Error> {
    let mut entries = Entries {
        types: Vec::new(),
        type_count: 0,
        functions: Vec::new(),
        count: 0,
        bodies: Vec::new(),
        exports: Vec::new(),
        exports_count: 0,
        type_size: 0,
    };
    let first_type = functions.types.len() as u32;
    let first_function = functions.function_types.len() as u32;
    // Wrapper signatures, deduplicated: (params, results) -> new type index. (Maps only
    // answer lookups; what is emitted follows the export order.)
    let mut signatures: HashMap<(Vec<ValType>, Vec<ValType>), u32> = HashMap::new();
    // One wrapper per function index, exported under each of its names.
    let mut wrappers: HashMap<u32, u32> = HashMap::new();
    let mut body = Vec::new();
    for (name, function) in &functions.exported {
        let Some(ty) = functions
            .function_types
            .get(*function as usize)
            .and_then(|t| functions.types.get(*t as usize))
            .and_then(|t| t.as_ref())
            .filter(|ty| ty.params().len() <= MAX_ENTRY_POINT_PARAMS)
        else {
            continue;
        };
        let wrapper = match wrappers.get(function) {
            Some(&wrapper) => wrapper,
            None => {
                let mut params = vec![ValType::I64];
                params.extend_from_slice(ty.params());
                let mut results = ty.results().to_vec();
                results.push(ValType::I64);
                let signature = (params, results);
                let type_index = match signatures.get(&signature) {
                    Some(&index) => index,
                    None => {
                        encode_func_type(&signature.0, &signature.1, &mut entries.types)?;
                        let index = first_type + entries.type_count;
                        signatures.insert(signature, index);
                        entries.type_count += 1;
                        index
                    }
                };
                type_index.encode(&mut entries.functions);
                let wrapper = first_function + entries.count;
                entries.count += 1;
                wrappers.insert(*function, wrapper);

                body.clear();
                body.push(0); // no locals
                body.extend_from_slice(&[0x20, 0x00, 0x24]); // local.get 0  global.set
                gas_global.encode(&mut body);
                if let Some((stack_global, limit)) = stack {
                    body.push(0x42); // i64.const
                    limit.encode(&mut body);
                    body.push(0x24);
                    stack_global.encode(&mut body);
                }
                for param in 1..=ty.params().len() as u32 {
                    body.push(0x20);
                    param.encode(&mut body);
                }
                body.push(0x10); // call
                function.encode(&mut body);
                body.push(0x23); // global.get
                gas_global.encode(&mut body);
                body.push(0x0b);
                (body.len() as u32).encode(&mut entries.bodies);
                entries.bodies.extend_from_slice(&body);
                wrapper
            }
        };
        format!("{}{name}", crate::abi::ENTRY_EXPORT_PREFIX)
            .as_str()
            .encode(&mut entries.exports);
        entries.exports.push(0x00);
        wrapper.encode(&mut entries.exports);
        entries.exports_count += 1;
        entries.type_size +=
            super::limits::func_type_size(ty.params().len() + 1, ty.results().len() + 1);
    }
    Ok(entries)
}

/// Appends a type-section entry `(func (param ...) (result ...))`.
fn encode_func_type(
    params: &[ValType],
    results: &[ValType],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    out.push(0x60);
    for types in [params, results] {
        (types.len() as u32).encode(out);
        for ty in types {
            wasm_encoder::ValType::try_from(*ty)
                .map_err(|_| {
                    Error::new(crate::error::ErrorKind::Internal {
                        message: format!("cannot encode the type {ty} of an entry point"),
                    })
                })?
                .encode(out);
        }
    }
    Ok(())
}
