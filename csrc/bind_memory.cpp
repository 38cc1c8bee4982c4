// bind_memory.cpp: the pool (memory.h) as numpy's data-memory handler, and its statistics.
//
// numpy (>= 1.22) allocates array data through a handler kept in a context variable
// (PyDataMem_SetHandler/GetHandler, NEP 49); every array keeps a reference to the handler
// that allocated it and frees through it. pycore.nn installs the pool with memory_enter()
// around each forward/backward/loss/optimizer call and puts the previous handler back with
// memory_leave(), so only arrays created by pycore come from the pool. This is the only
// file that includes numpy's C API.
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#include "bind_util.h"
#include <numpy/arrayobject.h>

#include "memory.h"

namespace pycore {
namespace {

namespace py = pybind11;

void* handler_malloc(void*, size_t bytes) {
    try {
        return memory::allocate(bytes);
    } catch (const std::bad_alloc&) {
        return nullptr;  // numpy raises MemoryError
    }
}

void* handler_calloc(void*, size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return nullptr;
    try {
        return memory::allocate_zeroed(count * size);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}

void* handler_realloc(void*, void* p, size_t bytes) { return memory::reallocate(p, bytes); }

void handler_free(void*, void* p, size_t) { memory::release(p); }

PyDataMem_Handler g_handler = {
    "pycore_pool", 1, {nullptr, handler_malloc, handler_calloc, handler_realloc, handler_free}};

PyObject* g_capsule = nullptr;  // one reference held for the life of the process

// memory_enter() -> the previous handler, or None when the pool is already current (a
// layer called from inside a Sequential): then memory_leave(None) has nothing to undo.
PyObject* memory_enter(PyObject*, PyObject*) {
    PyObject* current = PyDataMem_GetHandler();
    if (current == nullptr) return nullptr;
    if (current == g_capsule) {
        Py_DECREF(current);
        Py_RETURN_NONE;
    }
    Py_DECREF(current);
    return PyDataMem_SetHandler(g_capsule);  // new reference to the previous handler
}

PyObject* memory_leave(PyObject*, PyObject* previous) {
    if (previous != Py_None) {
        PyObject* ours = PyDataMem_SetHandler(previous);
        if (ours == nullptr) return nullptr;
        Py_DECREF(ours);
    }
    Py_RETURN_NONE;
}

// Called once per layer call, so plain METH_NOARGS/METH_O functions (~40 ns) rather
// than pybind11 wrappers (~300 ns). The docstrings start with a text signature (CPython's
// "name(args)\n--\n\n" form) so that inspect.signature and pybind11-stubgen read one.
PyMethodDef g_enter_def = {"memory_enter", memory_enter, METH_NOARGS,
                           "memory_enter()\n--\n\n"
                           "Install the pool as numpy's allocator in this context; returns what "
                           "memory_leave needs to undo it (None when it was already installed)."};
PyMethodDef g_leave_def = {"memory_leave", memory_leave, METH_O,
                           "memory_leave(previous, /)\n--\n\n"
                           "Undo memory_enter: put back the handler it returned."};

}  // namespace

void bind_memory(py::module_& m) {
    if (_import_array() < 0) throw py::error_already_set();
    g_capsule = PyCapsule_New(&g_handler, "mem_handler", nullptr);
    if (g_capsule == nullptr) throw py::error_already_set();
    m.attr("memory_handler") = py::reinterpret_borrow<py::object>(g_capsule);
    m.attr("memory_handler_name") = g_handler.name;
    const py::object module_name = m.attr("__name__");  // the functions' __module__
    for (PyMethodDef* def : {&g_enter_def, &g_leave_def}) {
        PyObject* fn = PyCFunction_NewEx(def, nullptr, module_name.ptr());
        if (fn == nullptr) throw py::error_already_set();
        m.attr(def->ml_name) = py::reinterpret_steal<py::object>(fn);
    }
    m.def("memory_stats", [] {
        const memory::Stats s = memory::stats();
        py::dict d;
        d["hits"] = s.hits;
        d["misses"] = s.misses;
        d["cached_bytes"] = s.cached_bytes;
        d["cache_limit"] = s.cache_limit;
        d["live_blocks"] = s.live_blocks;
        return d;
    }, "The pool's counters: hits, misses, cached_bytes, cache_limit, live_blocks.");
    m.def("memory_set_cache_limit", [](size_t bytes) { memory::set_cache_limit(bytes); }, py::arg("bytes"),
          "The most bytes of free blocks the pool keeps; frees the cache when it already holds more.");
    m.def("memory_empty_cache", &memory::empty_cache, "Return every cached free block to the system.");
    m.def("_memory_scratch_selftest", [](size_t count) {
        // Round trip through Scratch for the tests: allocate, write, read back, release.
        memory::Scratch<double> scratch(count);
        for (size_t i = 0; i < count; ++i) scratch[i] = static_cast<double>(i);
        double sum = 0;
        for (size_t i = 0; i < count; ++i) sum += scratch[i];
        return py::make_tuple(sum, reinterpret_cast<uintptr_t>(scratch.data()) % memory::kAlignment);
    }, py::arg("count"));
}

}  // namespace pycore
