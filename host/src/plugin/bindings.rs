//! Generated host bindings for the `flinkw:plugin` world. Private: the rest
//! of the engine uses [`super::Instance`].

#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "job",
    path: "../wit",
    with: {
        "flinkw:plugin/state.value-state": super::host::ValueStateHandle,
        "flinkw:plugin/state.list-state": super::host::ListStateHandle,
        "flinkw:plugin/state.map-state": super::host::MapStateHandle,
    },
    imports: { default: trappable },
});
