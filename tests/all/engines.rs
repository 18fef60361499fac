//! The same instrumented module on two engines: wasmtime (the runtime's engine) and wasmi (an
//! interpreter, as an independent reference). Both follow the instrumented-module ABI by hand,
//! as any host would: set `ri_sandbox_gas_left`, call, read it back.

use ri_sandbox::instrument::abi;

/// A plain value, compared bit for bit (floats as their bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
}

impl Value {
    /// The wasmtime value with the same bits.
    pub fn to_wasmtime(self) -> wasmtime::Val {
        match self {
            Value::I32(v) => wasmtime::Val::I32(v),
            Value::I64(v) => wasmtime::Val::I64(v),
            Value::F32(v) => wasmtime::Val::F32(v),
            Value::F64(v) => wasmtime::Val::F64(v),
        }
    }

    /// The value with the same bits as a numeric wasmtime result.
    pub fn from_wasmtime(value: &wasmtime::Val) -> Result<Value, String> {
        match *value {
            wasmtime::Val::I32(v) => Ok(Value::I32(v)),
            wasmtime::Val::I64(v) => Ok(Value::I64(v)),
            wasmtime::Val::F32(v) => Ok(Value::F32(v)),
            wasmtime::Val::F64(v) => Ok(Value::F64(v)),
            ref other => Err(format!("unsupported result {other:?}")),
        }
    }
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Returned(Vec<Value>),
    /// A trap with `ri_sandbox_gas_left < 0`.
    OutOfGas,
    /// A trap with `ri_sandbox_stack_left < 0` (and gas left).
    StackLimit,
    /// A trap of the module's own.
    Trapped,
    /// The test's wall-clock watchdog (wasmtime) or fuel watchdog (wasmi) stopped the call:
    /// metering failed to.
    Watchdog,
}

/// wasmtime: epoch ticks of 100 ms before the watchdog interrupts a call (5 s).
const WATCHDOG_TICKS: u64 = 50;
/// wasmi: fuel before its watchdog stops a call (a few seconds of interpretation).
const WATCHDOG_FUEL: u64 = 2_000_000_000;

/// A call's outcome and the gas left afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub outcome: Outcome,
    pub gas_left: i64,
}

pub trait Instance {
    fn call(&mut self, name: &str, args: &[Value], budget: i64) -> Result<Call, String>;
}

/// The proposals the tests' wasmtime engines enable: those instrumented modules may use. Plain
/// wasmtime settings otherwise, not the runtime's (the ABI must run on any engine).
pub fn wasmtime_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config
        .wasm_tail_call(true)
        .wasm_multi_memory(true)
        .wasm_memory64(true)
        .wasm_function_references(true)
        .wasm_exceptions(true)
        .wasm_gc(true)
        .wasm_extended_const(true);
    config
}

pub fn wasmtime_engine() -> wasmtime::Engine {
    let mut config = wasmtime_config();
    config.epoch_interruption(true);
    let engine = wasmtime::Engine::new(&config).expect("wasmtime engine");
    let ticker = engine.weak();
    std::thread::spawn(move || {
        while let Some(engine) = ticker.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    engine
}

pub fn wasmi_engine() -> wasmi::Engine {
    let mut config = wasmi::Config::default();
    config
        .wasm_tail_call(true)
        .wasm_multi_memory(true)
        .wasm_memory64(true)
        .wasm_extended_const(true)
        .wasm_simd(true)
        // Room beyond ri-sandbox's deterministic limit, so that the limit, not wasmi's own,
        // is what stops deep recursion (as in wasmtime, whose 512 KiB default is never hit).
        .set_max_recursion_depth(100_000)
        .set_max_stack_height(64 << 20)
        .consume_fuel(true);
    wasmi::Engine::new(&config)
}

pub struct Wasmtime {
    store: wasmtime::Store<()>,
    instance: wasmtime::Instance,
    gas: wasmtime::Global,
    stack: Option<(wasmtime::Global, i64)>,
}

/// The stack limit an instrumented module was built with (ABI section 7), which the host
/// writes back into `ri_sandbox_stack_left` before every call.
fn stack_limit(wasm: &[u8]) -> Option<i64> {
    abi::AbiInfo::read(wasm)
        .and_then(|info| info.stack_limit)
        .map(|l| l as i64)
}

impl Wasmtime {
    pub fn new(engine: &wasmtime::Engine, wasm: &[u8]) -> Result<Wasmtime, String> {
        let module = wasmtime::Module::new(engine, wasm).map_err(|e| format!("{e:#}"))?;
        let mut store = wasmtime::Store::new(engine, ());
        store.set_epoch_deadline(WATCHDOG_TICKS);
        let instance =
            wasmtime::Instance::new(&mut store, &module, &[]).map_err(|e| format!("{e:#}"))?;
        let gas = instance
            .get_global(&mut store, abi::GAS_LEFT_EXPORT)
            .ok_or("no gas global exported")?;
        let stack = match stack_limit(wasm) {
            Some(limit) => Some((
                instance
                    .get_global(&mut store, abi::STACK_LEFT_EXPORT)
                    .ok_or("no stack global exported")?,
                limit,
            )),
            None => None,
        };
        Ok(Wasmtime {
            store,
            instance,
            gas,
            stack,
        })
    }
}

impl Wasmtime {
    /// Every exported memory's bytes and every exported global's bits, in export order: the
    /// instance's observable state.
    pub fn state(&mut self) -> Vec<u8> {
        let exports: Vec<wasmtime::Extern> = self
            .instance
            .exports(&mut self.store)
            .map(|e| e.into_extern())
            .collect();
        let mut out = Vec::new();
        for export in exports {
            match export {
                wasmtime::Extern::Memory(memory) => {
                    out.extend_from_slice(memory.data(&self.store));
                }
                wasmtime::Extern::Global(global) => match global.get(&mut self.store) {
                    wasmtime::Val::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
                    wasmtime::Val::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
                    wasmtime::Val::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
                    wasmtime::Val::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
                    wasmtime::Val::V128(v) => out.extend_from_slice(&v.as_u128().to_le_bytes()),
                    _ => out.push(0xff),
                },
                _ => {}
            }
        }
        out
    }
}

impl Instance for Wasmtime {
    fn call(&mut self, name: &str, args: &[Value], budget: i64) -> Result<Call, String> {
        use wasmtime::Val;
        let func = self
            .instance
            .get_func(&mut self.store, name)
            .ok_or_else(|| format!("no export `{name}`"))?;
        let params: Vec<Val> = args.iter().map(|a| a.to_wasmtime()).collect();
        let ty = func.ty(&self.store);
        let mut results = vec![Val::I32(0); ty.results().len()];
        self.gas
            .set(&mut self.store, Val::I64(budget))
            .map_err(|e| e.to_string())?;
        if let Some((stack, limit)) = self.stack {
            stack
                .set(&mut self.store, Val::I64(limit))
                .map_err(|e| e.to_string())?;
        }
        self.store.set_epoch_deadline(WATCHDOG_TICKS);
        let result = func.call(&mut self.store, &params, &mut results);
        let gas_left = self.gas.get(&mut self.store).unwrap_i64();
        let stack_left = match self.stack {
            Some((stack, _)) => stack.get(&mut self.store).unwrap_i64(),
            None => 0,
        };
        let outcome = match result {
            Ok(()) => Outcome::Returned(
                results
                    .iter()
                    .map(Value::from_wasmtime)
                    .collect::<Result<_, _>>()?,
            ),
            Err(e) if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) => {
                Outcome::Watchdog
            }
            Err(_) if gas_left < 0 => Outcome::OutOfGas,
            Err(_) if stack_left < 0 => Outcome::StackLimit,
            Err(_) => Outcome::Trapped,
        };
        Ok(Call { outcome, gas_left })
    }
}

pub struct Wasmi {
    store: wasmi::Store<()>,
    instance: wasmi::Instance,
    gas: wasmi::Global,
    stack: Option<(wasmi::Global, i64)>,
}

impl Wasmi {
    pub fn new(engine: &wasmi::Engine, wasm: &[u8]) -> Result<Wasmi, String> {
        let module = wasmi::Module::new(engine, wasm).map_err(|e| e.to_string())?;
        let mut store = wasmi::Store::new(engine, ());
        let linker = wasmi::Linker::<()>::new(engine);
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(|e| e.to_string())?;
        let gas = instance
            .get_global(&store, abi::GAS_LEFT_EXPORT)
            .ok_or("no gas global exported")?;
        let stack = match stack_limit(wasm) {
            Some(limit) => Some((
                instance
                    .get_global(&store, abi::STACK_LEFT_EXPORT)
                    .ok_or("no stack global exported")?,
                limit,
            )),
            None => None,
        };
        Ok(Wasmi {
            store,
            instance,
            gas,
            stack,
        })
    }
}

impl Instance for Wasmi {
    fn call(&mut self, name: &str, args: &[Value], budget: i64) -> Result<Call, String> {
        use wasmi::Val;
        let func = self
            .instance
            .get_func(&self.store, name)
            .ok_or_else(|| format!("no export `{name}`"))?;
        let params: Vec<Val> = args
            .iter()
            .map(|a| match *a {
                Value::I32(v) => Val::I32(v),
                Value::I64(v) => Val::I64(v),
                Value::F32(v) => Val::F32(wasmi::F32::from_bits(v)),
                Value::F64(v) => Val::F64(wasmi::F64::from_bits(v)),
            })
            .collect();
        let ty = func.ty(&self.store);
        let mut results: Vec<Val> = ty
            .results()
            .iter()
            .map(|t| Val::default_for_ty(*t))
            .collect();
        self.gas
            .set(&mut self.store, Val::I64(budget))
            .map_err(|e| e.to_string())?;
        if let Some((stack, limit)) = self.stack {
            stack
                .set(&mut self.store, Val::I64(limit))
                .map_err(|e| e.to_string())?;
        }
        self.store
            .set_fuel(WATCHDOG_FUEL)
            .map_err(|e| e.to_string())?;
        let result = func.call(&mut self.store, &params, &mut results);
        let Val::I64(gas_left) = self.gas.get(&self.store) else {
            return Err("gas global is not i64".into());
        };
        let stack_left = match self.stack {
            Some((stack, _)) => match stack.get(&self.store) {
                Val::I64(v) => v,
                _ => return Err("stack global is not i64".into()),
            },
            None => 0,
        };
        let outcome = match result {
            Ok(()) => Outcome::Returned(
                results
                    .iter()
                    .map(|v| match v {
                        Val::I32(v) => Ok(Value::I32(*v)),
                        Val::I64(v) => Ok(Value::I64(*v)),
                        Val::F32(v) => Ok(Value::F32(v.to_bits())),
                        Val::F64(v) => Ok(Value::F64(v.to_bits())),
                        other => Err(format!("unsupported result {other:?}")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Err(e) if e.as_trap_code() == Some(wasmi::TrapCode::OutOfFuel) => Outcome::Watchdog,
            Err(_) if gas_left < 0 => Outcome::OutOfGas,
            Err(_) if stack_left < 0 => Outcome::StackLimit,
            Err(_) => Outcome::Trapped,
        };
        Ok(Call { outcome, gas_left })
    }
}
