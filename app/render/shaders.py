"""GLSL 330 core sources and a small compile/link helper."""

from __future__ import annotations

from OpenGL import GL

# Particles as point sprites. The sprite's pixel diameter is the particle's world diameter pushed
# through the projection: d = 2r * P[1][1] / w_clip * (viewport_h / 2). This holds for both the 2D
# orthographic (w = 1) and the 3D perspective projection.
PARTICLE_VS = """
#version 330 core
layout(location = 0) in vec3 a_pos;
layout(location = 1) in int a_material;
layout(location = 2) in vec3 a_velocity;
uniform mat4 u_view;
uniform mat4 u_proj;
uniform float u_radius;
uniform float u_viewport_h;
uniform vec2 u_point_range;
uniform float u_speed_scale;
uniform vec3 u_palette[4];
uniform vec3 u_lut[LUT_SIZE];
flat out vec3 v_color;
flat out vec3 v_center;
void main() {
    vec4 eye = u_view * vec4(a_pos, 1.0);
    gl_Position = u_proj * eye;
    float diameter = u_radius * u_proj[1][1] * u_viewport_h / gl_Position.w;
    gl_PointSize = clamp(diameter, u_point_range.x, u_point_range.y);
#ifdef SPEED_COLORS
    // Piecewise-linear lookup in the colormap table (arithmetic, not a texture: llvmpipe samples
    // textures in vertex shaders slowly).
    float x = clamp(length(a_velocity) / u_speed_scale, 0.0, 1.0) * float(LUT_SIZE - 1);
    int i = min(int(x), LUT_SIZE - 2);
    v_color = mix(u_lut[i], u_lut[i + 1], x - float(i));
#else
    v_color = u_palette[clamp(a_material, 0, 3)];
#endif
    v_center = eye.xyz;
}
"""

# The sprite is shaded as a sphere: the normal comes from the position in the sprite. With
# SPHERE_DEPTH (3D) the fragment's depth is the sphere surface's, so particles intersect and occlude
# correctly whatever the draw order.
PARTICLE_FS = """
#version 330 core
flat in vec3 v_color;
flat in vec3 v_center;
uniform mat4 u_proj;
uniform float u_radius;
uniform vec3 u_light;
out vec4 frag_color;
void main() {
    vec2 p = gl_PointCoord * 2.0 - 1.0;
    p.y = -p.y;
    float r2 = dot(p, p);
    if (r2 > 1.0) discard;
    vec3 n = vec3(p, sqrt(1.0 - r2));
    float diffuse = max(dot(n, u_light), 0.0);
    frag_color = vec4(v_color * (0.35 + 0.65 * diffuse), 1.0);
#ifdef SPHERE_DEPTH
    vec4 clip = u_proj * vec4(v_center + n * u_radius, 1.0);
    gl_FragDepth = clamp(0.5 * clip.z / clip.w + 0.5, 0.0, 1.0);
#endif
}
"""

# World-space meshes: domain fill, floor, box edges, obstacles.
MESH_VS = """
#version 330 core
layout(location = 0) in vec3 a_pos;
layout(location = 1) in vec3 a_normal;
uniform mat4 u_view;
uniform mat4 u_proj;
out vec3 v_world;
out vec3 v_normal;
void main() {
    v_world = a_pos;
    v_normal = a_normal;
    gl_Position = u_proj * u_view * vec4(a_pos, 1.0);
}
"""

MESH_FS = """
#version 330 core
in vec3 v_world;
in vec3 v_normal;
uniform vec4 u_color;
uniform float u_checker_size;
uniform vec3 u_checker_a;
uniform vec3 u_checker_b;
uniform vec3 u_light_world;
out vec4 frag_color;
void main() {
    vec3 base = u_color.rgb;
#ifdef CHECKER
    ivec2 cell = ivec2(floor(v_world.xz / u_checker_size));
    base = ((cell.x + cell.y) & 1) == 0 ? u_checker_a : u_checker_b;
#endif
#ifdef LIT
    // Two-sided Lambert: planes and ramps may be seen from either side.
    float diffuse = abs(dot(normalize(v_normal), u_light_world));
    base *= 0.45 + 0.55 * diffuse;
#endif
    frag_color = vec4(base, u_color.a);
}
"""

# Screen-space overlays (walls in 2D, strokes, arrows, the HUD quad), positions already in NDC.
SCREEN_VS = """
#version 330 core
layout(location = 0) in vec2 a_pos;
layout(location = 1) in vec2 a_uv;
layout(location = 2) in vec4 a_color;
out vec2 v_uv;
out vec4 v_color;
void main() {
    v_uv = a_uv;
    v_color = a_color;
    gl_Position = vec4(a_pos, 0.0, 1.0);
}
"""

SCREEN_FS = """
#version 330 core
in vec2 v_uv;
in vec4 v_color;
uniform int u_textured;
uniform sampler2D u_tex;
out vec4 frag_color;
void main() {
    frag_color = u_textured != 0 ? texture(u_tex, v_uv) * v_color : v_color;
}
"""


class Program:
    """A linked program with cached uniform locations."""

    def __init__(self, vertex_src: str, fragment_src: str, defines: tuple[str, ...] = ()) -> None:
        # Variants are compiled with #defines rather than branching on uniforms: llvmpipe runs both
        # sides of a uniform branch, which made e.g. the 2D frame 4 ms slower.
        header = "#version 330 core\n" + "".join(f"#define {d}\n" for d in defines)
        vertex_src, fragment_src = (
            src.replace("#version 330 core\n", header, 1) for src in (vertex_src, fragment_src)
        )
        shaders = [_compile(GL.GL_VERTEX_SHADER, vertex_src), _compile(GL.GL_FRAGMENT_SHADER, fragment_src)]
        self.id = int(GL.glCreateProgram())
        for s in shaders:
            GL.glAttachShader(self.id, s)
        GL.glLinkProgram(self.id)
        for s in shaders:
            GL.glDetachShader(self.id, s)
            GL.glDeleteShader(s)
        if not GL.glGetProgramiv(self.id, GL.GL_LINK_STATUS):
            log = GL.glGetProgramInfoLog(self.id)
            GL.glDeleteProgram(self.id)
            raise RuntimeError(f"shader link failed: {log!r}")
        self._locations: dict[str, int] = {}

    def loc(self, name: str) -> int:
        if name not in self._locations:
            self._locations[name] = int(GL.glGetUniformLocation(self.id, name))
        return self._locations[name]

    def delete(self) -> None:
        GL.glDeleteProgram(self.id)


def _compile(kind: int, src: str) -> int:
    shader = int(GL.glCreateShader(kind))
    GL.glShaderSource(shader, src)
    GL.glCompileShader(shader)
    if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
        log = GL.glGetShaderInfoLog(shader)
        GL.glDeleteShader(shader)
        raise RuntimeError(f"shader compile failed: {log!r}")
    return shader
