# stockade_bpf_object(NAME SOURCE): compiles SOURCE with clang for the BPF
# target and makes an INTERFACE target NAME whose include path holds
# NAME.skel.h (bpftool gen skeleton), to link into the userspace side.
find_program(BPF_CLANG NAMES clang-19 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin REQUIRED)
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-multiarch
                OUTPUT_VARIABLE STOCKADE_MULTIARCH OUTPUT_STRIP_TRAILING_WHITESPACE)

file(GLOB_RECURSE STOCKADE_BPF_HEADERS
     ${CMAKE_SOURCE_DIR}/bpf/lib/*.h ${CMAKE_SOURCE_DIR}/maps/*.h)

function(stockade_bpf_object name source)
  set(out_dir ${CMAKE_BINARY_DIR}/bpf)
  set(object ${out_dir}/${name}.o)
  set(skeleton ${out_dir}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${object}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${BPF_CLANG} -target bpf -O2 -g -Wall -Werror
            -I${CMAKE_SOURCE_DIR} -I${CMAKE_SOURCE_DIR}/bpf
            -I/usr/include/${STOCKADE_MULTIARCH}
            -c ${source} -o ${object}
    DEPENDS ${source} ${STOCKADE_BPF_HEADERS}
    COMMENT "BPF ${name}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skeleton}
    COMMAND ${BPFTOOL} gen skeleton ${object} name ${name} > ${skeleton}
    DEPENDS ${object}
    COMMENT "skeleton ${name}"
    VERBATIM)
  add_custom_target(${name}_gen DEPENDS ${skeleton})
  add_library(${name} INTERFACE)
  add_dependencies(${name} ${name}_gen)
  target_include_directories(${name} INTERFACE ${out_dir})
  target_link_libraries(${name} INTERFACE PkgConfig::LIBBPF)
endfunction()
